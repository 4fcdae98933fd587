from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from tests.conftest import run_cli

from framescope.config import (
    BACKENDS,
    BATCHING_MODES,
    DECODERS,
    IMAGE_FORMATS,
    MALLOC_MODES,
    MODES,
    MULTI_MODEL_STRATEGIES,
    PIPELINES,
    PREP_LEVELS,
    PROGRESS_MODES,
    SECTIONS,
    AnnotateConfig,
    ExtractConfig,
    ModelConfig,
    RunConfig,
    flat_defaults,
    flat_settings,
    parse_core_list,
    setting,
)
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


@pytest.mark.parametrize("spec", ["", "  "])
def test_an_empty_core_list_is_an_error_not_all_cores(spec: str) -> None:
    with pytest.raises(
        ConfigError, match=r"--core-bind '\s*' is empty; pass a core list such as 0-3 or 0,2,5, or 'all'"
    ):
        parse_core_list(spec)
    with pytest.raises(ConfigError, match="is empty"):
        base(core_bind=spec)


def test_cli_refuses_an_empty_core_bind(tmp_path: Path) -> None:
    result = run_cli(
        "run", "--model-name", "resnet18", "--input_path", "synthetic:64x64:2", "--core-bind", "",
        "--output-dir", str(tmp_path / "runs"),
    )  # fmt: skip
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "framescope: error: --core-bind '' is empty; pass a core list such as 0-3 or 0,2,5, or 'all' for "
        "every core."
    ]
    assert not (tmp_path / "runs").exists()


def test_a_core_list_that_is_not_text_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: {name: resnet50}\nsource: {input_path: a.mp4}\ncore_bind: 3\n")
    with pytest.raises(ConfigError, match=r"core_bind = 3 should be a string: 'all', a range like '0-3'"):
        RunConfig.from_yaml(path)


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
        (
            {"source_fps": 0},
            r"^source_fps = 0 should be a positive number of frames per second \(finite, > 0\); "
            r"pass e.g. --source-fps 30.$",
        ),
        ({"source_fps": -1.0}, r"source_fps = -1.0 should be a positive number of frames per second"),
        (
            {"lr": 0},
            r"^learning_rate = 0 should be a positive number \(finite, > 0\); pass e.g. --lr 0.01.$",
        ),
        (
            {"deadline_ms": 0},
            r"^deadline_ms = 0 should be a positive number of milliseconds \(finite, > 0\); "
            r"pass e.g. --deadline-ms 100.$",
        ),
        (
            {"reconnect_for": -5},
            r"reconnect_for_s = -5 should be a positive number of seconds .* --reconnect",
        ),
        ({"torch_threads": 0}, r"torch_threads = 0 should be a positive integer"),
        ({"run_name": "a/b"}, r"run_name = 'a/b' should be a plain directory name"),
    ],
)
def test_invalid_values_get_a_message_that_names_value_and_fix(flat: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        base(**flat)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    ("setting", "name", "unit"),
    [
        ("source_fps", "source_fps", "frames per second"),
        ("open_timeout", "open_timeout_s", "seconds"),
        ("read_timeout", "read_timeout_s", "seconds"),
        ("reconnect_for", "reconnect_for_s", "seconds"),
        ("deadline_ms", "deadline_ms", "milliseconds"),
        ("lr", "learning_rate", None),
    ],
)
def test_nan_and_infinity_are_refused(bad: float, setting: str, name: str, unit: str | None) -> None:
    what = f"a positive number of {unit}" if unit else "a positive number"
    with pytest.raises(ConfigError) as caught:
        base(**{setting: bad})
    assert str(caught.value).startswith(f"{name} = {bad!r} should be {what} (finite, > 0); pass e.g. --")


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_cli_refuses_a_source_fps_that_is_no_frame_rate(value: str, tmp_path: Path) -> None:
    result = run_cli(
        "run", "--model-name", "resnet18", "--input_path", "synthetic:64x64:2", "--source-fps", value,
        "--output-dir", str(tmp_path),
    )  # fmt: skip
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        f"framescope: error: source_fps = {float(value)!r} should be a positive number of frames per second "
        "(finite, > 0); pass e.g. --source-fps 30."
    ]


def test_cli_lr_message_is_about_a_learning_rate(tmp_path: Path) -> None:
    result = run_cli(
        "run", "--model-name", "resnet18", "--input_path", "synthetic:64x64:2", "--mode", "retrain",
        "--lr", "0", "--output-dir", str(tmp_path),
    )  # fmt: skip
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "framescope: error: learning_rate = 0.0 should be a positive number (finite, > 0); "
        "pass e.g. --lr 0.01."
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"fps": math.inf},
            r"^--fps inf should be > 0 frames per second of video \(finite\), e.g. --fps 0.5.$",
        ),
        ({"fps": math.nan}, r"^--fps nan should be > 0 frames per second"),
        ({"start_s": math.nan}, r"^--start nan should be a finite number of seconds >= 0, e.g. --start 60.$"),
        ({"start_s": math.inf}, r"^--start inf should be a finite number of seconds >= 0"),
        (
            {"end_s": math.nan},
            r"^--end nan should be a finite number of seconds, e.g. --end 90; leave it out",
        ),
        ({"end_s": math.inf}, r"^--end inf should be a finite number of seconds"),
        ({"open_timeout_s": math.inf}, r"^open_timeout_s = inf should be a positive number of seconds"),
        ({"read_timeout_s": math.nan}, r"^read_timeout_s = nan should be a positive number of seconds"),
    ],
)
def test_extract_refuses_nan_and_infinity(values: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExtractConfig(input="v.mp4", output="o", **values)


@pytest.mark.parametrize("flag", ["--fps", "--start", "--end", "--open-timeout"])
def test_cli_extract_refuses_nan(flag: str, tmp_path: Path) -> None:
    result = run_cli("extract-frames", "-i", str(tmp_path / "v.mp4"), "-o", str(tmp_path / "o"), flag, "nan")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "nan should be" in lines[0], result.err


@pytest.mark.parametrize("threshold", [math.nan, math.inf])
def test_annotate_refuses_a_threshold_that_is_no_score(threshold: float) -> None:
    with pytest.raises(ConfigError, match=r"--threshold .* should be a score from 0 to 1"):
        AnnotateConfig(input="i", output="o", threshold=threshold)


def listed_keys(message: str) -> list[str]:
    """The keys a one-line 'unknown key' message lists after 'closest first: '."""
    assert "\n" not in message
    return message.rpartition("closest first: ")[2].rstrip(".").split(", ")


def test_unknown_flat_setting_lists_every_setting_closest_first() -> None:
    with pytest.raises(
        ConfigError, match=r"^unknown setting 'batchsize'; valid settings, closest first: "
    ) as caught:
        base(batchsize=4)
    keys = listed_keys(str(caught.value))
    assert keys[0] == "batch_size"
    assert sorted(keys) == sorted(RunConfig.FLAT_FIELDS)
    with pytest.raises(
        ConfigError, match=r"^unknown setting 'preplevel'; valid settings, closest first: prep_level, "
    ):
        base().replace(preplevel="simple")


def test_unknown_key_in_a_section_lists_the_section_keys_closest_first() -> None:
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict({"model": {"nmae": "x"}, "source": {"input_path": "a.mp4"}})
    message = str(caught.value)
    assert message.startswith("unknown key 'nmae' in section 'model'; valid keys, closest first: name, ")
    keys = listed_keys(message)
    assert sorted(keys) == sorted(f.name for f in dataclasses.fields(ModelConfig))
    assert keys.index("name") < keys.index("num_classes") < keys.index("compile_backend")


def test_unknown_top_level_key_lists_the_top_level_keys_closest_first() -> None:
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict({"modle": {"name": "x"}, "source": {"input_path": "a.mp4"}})
    message = str(caught.value)
    assert message.startswith("unknown config key 'modle'; valid keys, closest first: model, ")
    assert sorted(listed_keys(message)) == sorted(f.name for f in dataclasses.fields(RunConfig))


def test_cli_config_file_with_an_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: {name: resnet18}\nsource: {input_path: 'synthetic:64x64:2', decodr: pyav}\n")
    result = run_cli("run", "--config", str(path), "--output-dir", str(tmp_path / "runs"))
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(
        "framescope: error: unknown key 'decodr' in section 'source'; valid keys, closest first: decoder, "
    )


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = base(batch_size=4, core_bind="0-1", torch_profile=True, weights="DEFAULT")
    path = tmp_path / "run.yaml"
    path.write_text(config.to_yaml())
    assert RunConfig.from_yaml(path) == config


def test_yaml_with_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: {name: resnet50, weigths: none}\nsource: {input_path: a.mp4}\n")
    with pytest.raises(
        ConfigError, match=r"^unknown key 'weigths' in section 'model'; valid keys, closest first: weights, "
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


# The flat names are an interface (from_flat, replace, scripts); a flag renamed on its field renames its flat
# name, so they are pinned here.
FLAT_NAMES = {
    "model_name": ("model", "name"),
    "mode": ("model", "mode"),
    "weights": ("model", "weights"),
    "infer_on_gpu": ("model", "on_gpu"),
    "enable_compile": ("model", "compile"),
    "compile_backend": ("model", "compile_backend"),
    "use_amp": ("model", "amp"),
    "num_classes": ("model", "num_classes"),
    "lr": ("model", "learning_rate"),
    "split_point": ("model", "split_point"),
    "backend": ("model", "backend"),
    "input_path": ("source", "input_path"),
    "cameras": ("source", "cameras"),
    "decoder": ("source", "decoder"),
    "decode_threads": ("source", "decode_threads"),
    "decode_on_gpu": ("source", "decode_on_gpu"),
    "decode_size": ("source", "decode_size"),
    "open_timeout": ("source", "open_timeout_s"),
    "read_timeout": ("source", "read_timeout_s"),
    "source_fps": ("source", "source_fps"),
    "loop": ("source", "loop"),
    "live_buffer": ("source", "live_buffer"),
    "reconnect_for": ("source", "reconnect_for_s"),
    "prep_level": ("preprocess", "level"),
    "prep_on_gpu": ("preprocess", "on_gpu"),
    "post_on_gpu": ("postprocess", "on_gpu"),
    "torch_profile": ("profile", "enabled"),
    "profile_wait": ("profile", "wait"),
    "profile_warmup": ("profile", "warmup"),
    "profile_active": ("profile", "active"),
    "batch_size": ("batch_size",),
    "pipeline": ("pipeline",),
    "prefetch": ("prefetch",),
    "deadline_ms": ("deadline_ms",),
    "batching": ("batching",),
    "max_batch": ("max_batch",),
    "max_delay_ms": ("max_delay_ms",),
    "max_steps": ("max_steps",),
    "warmup_steps": ("warmup_steps",),
    "core_bind": ("core_bind",),
    "torch_threads": ("torch_threads",),
    "output_dir": ("output_dir",),
    "run_name": ("run_name",),
    "seed": ("seed",),
    "malloc": ("malloc",),
    "progress": ("progress",),
    "multi_model": ("multi_model",),
    "solo_steps": ("solo_steps",),
    "models": ("models",),
}


def test_flat_names_are_the_seeds_flags() -> None:
    assert RunConfig.FLAT_FIELDS == FLAT_NAMES
    assert list(RunConfig.FLAT_FIELDS) == list(FLAT_NAMES)  # field order: "closest first" ties keep it


def test_flat_fields_cover_every_field() -> None:
    leaves = [
        (top.name, inner.name) if top.name in SECTIONS else (top.name,)
        for top in dataclasses.fields(RunConfig)
        for inner in (dataclasses.fields(SECTIONS[top.name]) if top.name in SECTIONS else [top])
    ]
    assert sorted(RunConfig.FLAT_FIELDS.values()) == sorted(leaves)
    assert len(RunConfig.FLAT_FIELDS) == len(leaves)


@pytest.mark.parametrize("kind", [RunConfig, ExtractConfig, AnnotateConfig])
def test_no_two_fields_declare_the_same_flag(kind: type) -> None:
    options = [option for s in flat_settings(kind) for option in s.spec.options]
    assert len(options) == len(set(options))
    names = [s.name for s in flat_settings(kind)]
    assert len(names) == len(set(names))


def test_a_field_without_a_setting_or_with_a_taken_flat_name_is_refused() -> None:
    @dataclasses.dataclass(kw_only=True)
    class Plain:
        size: int = 1

    with pytest.raises(TypeError, match=r"Plain.size is not declared with setting"):
        flat_settings(Plain)

    @dataclasses.dataclass(kw_only=True)
    class Twice:
        a: int = setting(1, flag="--size", help="a")
        b: int = setting(2, flag="--size", help="b")

    with pytest.raises(TypeError, match=r"Twice: more than one field has the flat name size"):
        flat_settings(Twice)


def test_choices_come_from_the_literal_annotations() -> None:
    choices = {s.name: s.choices for s in flat_settings(RunConfig) if s.choices is not None}
    assert choices == {
        "mode": MODES,
        "backend": BACKENDS,
        "decoder": DECODERS,
        "prep_level": PREP_LEVELS,
        "pipeline": PIPELINES,
        "batching": BATCHING_MODES,
        "malloc": MALLOC_MODES,
        "progress": PROGRESS_MODES,
        "multi_model": MULTI_MODEL_STRATEGIES,
    }
    assert DECODERS == ("opencv", "pyav", "torchcodec")
    assert PROGRESS_MODES == ("auto", "bar", "log", "none")
    assert next(s.choices for s in flat_settings(ExtractConfig) if s.name == "format") == IMAGE_FORMATS
    with pytest.raises(
        ConfigError, match=r"^pipeline = 'later' is not one of sync, async; pass e.g. --pipeline"
    ):
        base(pipeline="later")
    with pytest.raises(
        ConfigError, match=r"^format = 'gif' is not one of png, jpg; pass e.g. --format png.$"
    ):
        ExtractConfig(input="v.mp4", output="o", format="gif")  # type: ignore[arg-type]
