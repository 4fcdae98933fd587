# framescope: `make demo` and `make test` are all a fresh machine needs (python3 >= 3.11 and make).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.framescope-installed

.PHONY: demo doctor test test-fast test-slow test-gpu lint format check-env bench clean-env

# The environment is rebuilt when the project's dependencies change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) scripts/check_env.py
	@touch $(STAMP)

check-env: $(STAMP)
	$(PY) scripts/check_env.py

# What this machine can do (decoders, GPU, NVDEC, nsys, Ray, ONNX Runtime, cores, load): run it first when
# something fails.
doctor: $(STAMP)
	$(VENV)/bin/framescope doctor

demo: $(STAMP)
	$(VENV)/bin/framescope run --model-name resnet18 --input_path sample: --batch-size 8 \
		--prep-level medium --max-steps 30 --output-dir runs

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks scripts
	$(VENV)/bin/ruff check --fix src tests benchmarks scripts

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not gpu"

test-slow: $(STAMP)
	$(PY) -m pytest -m "slow and not gpu"

# CI (.ci/run) runs this: lint and type check, the default suite, then the slow tests.
test: lint test-fast test-slow

test-gpu: $(STAMP)
	FRAMESCOPE_REQUIRE_GPU=1 $(PY) -m pytest -m gpu

bench: $(STAMP)
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/pipeline.py

clean-env:
	rm -rf $(VENV)
