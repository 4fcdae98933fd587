from __future__ import annotations

from pathlib import Path

import pytest

from framescope.config import RunConfig, flat_defaults, parse_core_list
from framescope.errors import ConfigError


def base(**extra: object) -> RunConfig:
    return RunConfig.from_flat(model_name="resnet50", input_path="video.mp4", **extra)


@pytest.mark.parametrize(
    ("spec", "cores"),
    [("all", None), ("0-3", (0, 1, 2, 3)), ("0,2,5", (0, 2, 5)), ("0-1,4", (0, 1, 4)), (" 3 ", (3,))],
)
def test_core_lists_parse(spec: str, cores: tuple[int, ...] | None) -> None:
    assert parse_core_list(spec) == cores


@pytest.mark.parametrize("spec", ["3-1", "a-b", "1,,2", "-1", "0-", "x"])
def test_bad_core_lists_name_the_accepted_forms(spec: str) -> None:
    with pytest.raises(
        ConfigError, match=r"--core-bind .* use 'all', a range like 0-3, or a list like 0,2,5"
    ):
        parse_core_list(spec)


def test_flat_names_build_the_nested_config() -> None:
    config = base(batch_size=16, prep_level="complex", infer_on_gpu=True, use_amp=True, max_steps=500)
    assert config.model.name == "resnet50"
    assert config.source.input_path == "video.mp4"
    assert config.batch_size == 16
    assert config.preprocess.level == "complex"
    assert config.model.on_gpu and config.model.amp
    assert config.max_steps == 500


@pytest.mark.parametrize(
    ("flat", "message"),
    [
        ({"batch_size": 0}, r"batch_size = 0 should be a positive integer; pass e.g. --batch-size 8"),
        ({"batch_size": -3}, r"batch_size = -3 should be a positive integer"),
        ({"max_steps": 0}, r"max_steps = 0 should be a positive integer; pass e.g. --max-steps"),
        ({"warmup_steps": -1}, r"warmup_steps = -1 should be an integer >= 0"),
        ({"prep_level": "extreme"}, r"prep_level = 'extreme' is not one of simple, medium, complex"),
        ({"mode": "train"}, r"mode = 'train' is not one of inference, retrain"),
        ({"decoder": "ffmpeg"}, r"decoder = 'ffmpeg' is not one of opencv, pyav"),
        ({"open_timeout": 0}, r"open_timeout_s = 0 should be a positive number of seconds"),
        ({"torch_threads": 0}, r"torch_threads = 0 should be a positive integer"),
        ({"run_name": "a/b"}, r"run_name = 'a/b' should be a plain directory name"),
    ],
)
def test_invalid_values_get_a_message_that_names_value_and_fix(flat: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        base(**flat)


def test_unknown_flat_setting_suggests_the_close_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'batchsize'; did you mean 'batch_size'\?"):
        base(batchsize=4)


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = base(batch_size=4, core_bind="0-1", torch_profile=True, weights="DEFAULT")
    path = tmp_path / "run.yaml"
    path.write_text(config.to_yaml())
    assert RunConfig.from_yaml(path) == config


def test_yaml_with_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: {name: resnet50, weigths: none}\nsource: {input_path: a.mp4}\n")
    with pytest.raises(
        ConfigError, match=r"unknown key 'weigths' in section 'model'; did you mean 'weights'\?"
    ):
        RunConfig.from_yaml(path)


def test_broken_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"run.yaml is not valid YAML"):
        RunConfig.from_yaml(path)


def test_replace_changes_only_what_is_named() -> None:
    config = base(batch_size=4)
    changed = config.replace(batch_size=8, decoder="pyav")
    assert (changed.batch_size, changed.source.decoder) == (8, "pyav")
    assert changed.model == config.model
    assert config.batch_size == 4


def test_flat_defaults_come_from_the_dataclasses() -> None:
    defaults = flat_defaults()
    assert defaults["batch_size"] == RunConfig.__dataclass_fields__["batch_size"].default
    assert defaults["prep_level"] == "medium"
    assert defaults["decoder"] == "opencv"
    assert defaults["weights"] == "none"
    assert defaults["model_name"] is None
    assert set(defaults) == set(RunConfig.FLAT_FIELDS)
