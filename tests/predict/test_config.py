"""model.toml parsing: valid files, ELM-written files, and errors that name the field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from augury.predict.config import load_config, parse_config
from augury.predict.errors import ConfigError
from tests.predict.helpers import LINEAR_TOML, make_elm


def test_parses_a_full_config() -> None:
    config = parse_config(tomllib.loads(LINEAR_TOML), "linear")
    assert config.task == "classification" and config.runtime == "onnx"
    assert config.inputs[0].dtype == "float32" and config.inputs[0].shape == (-1, 2)
    assert config.outputs[1].datatype == "BYTES"
    assert config.labels == ("a", "b", "c")
    assert config.batching.max_queue_delay_ms == 20
    assert config.postprocess.softmax


def test_accepts_the_model_toml_written_by_elm(tmp_path: Path) -> None:
    make_elm(tmp_path, "fraudish")
    config = load_config(tmp_path / "fraudish")
    assert config.runtime == "elm" and config.name == "fraudish"
    assert config.inputs[0].features == ("x0", "x1", "x2", "x3")
    assert config.labels == ("0", "1")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (('task = "classification"', 'task = "clustering"'), "'task'"),
        (('runtime = "onnx"', 'runtime = "pickle"'), "'runtime'"),
        (
            ('dtype = "FP32"\nshape = [-1, 2]', 'dtype = "float128"\nshape = [-1, 2]'),
            "'inputs[0].dtype'",
        ),
        (("shape = [-1, 2]", "shape = [0, 2]"), "'inputs[0].shape'"),
        (("max_batch_size = 64", "max_batch_size = 0"), "'batching.max_batch_size'"),
        (("max_batch_size = 64", "max_batch_sise = 8"), "'batching.max_batch_sise'"),
        (("softmax = true", "softmax = 1"), "'postprocess.softmax'"),
        (("[postprocess]", '[preprocess]\nkind = "audio"\n[postprocess]'), "'preprocess.kind'"),
    ],
)
def test_bad_config_names_the_field(change: tuple[str, str], field: str) -> None:
    old, new = change
    assert old in LINEAR_TOML
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_config(tomllib.loads(LINEAR_TOML.replace(old, new)), "linear")


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing"):
        load_config(tmp_path)
    (tmp_path / "model.toml").write_text("task = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path)
