from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from augury.elm import ELMClassifier, ELMRegressor
from augury.elm.io import load_model, read_spec, resolve_version, save_model, to_toml
from augury.elm.kernel import KernelELMClassifier
from tests.elm.conftest import Split


def test_round_trip_predicts_identically(tmp_path: Path, digits: Split) -> None:
    X, Xt, y, _ = digits
    model = ELMClassifier(n_hidden=64, activation="gelu").fit(X, y)
    folder = save_model(model, tmp_path / "digits", target="digit")
    assert folder == tmp_path / "digits" / "1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.json",
        "model.onnx",
        "model.safetensors",
    ]
    loaded = load_model(tmp_path / "digits")
    np.testing.assert_array_equal(loaded.predict_proba(Xt), model.predict_proba(Xt))
    assert loaded.target_ == "digit" and loaded.feature_names_ == [f"x{i}" for i in range(64)]


def test_versions_increase_and_model_toml_describes_the_latest(
    tmp_path: Path, cancer: Split
) -> None:
    X, _, y, _ = cancer
    names = [f"f{i}" for i in range(30)]
    for width in (8, 16):
        model = ELMClassifier(n_hidden=width).fit(X, y)
        save_model(model, tmp_path / "m", feature_names=names, target="diagnosis")
    assert resolve_version(tmp_path / "m") == tmp_path / "m" / "2"
    spec = read_spec(tmp_path / "m")
    assert spec["name"] == "m" and spec["runtime"] == "elm" and spec["version"] == 2
    assert spec["task"] == "classification"
    assert spec["inputs"] == [
        {"name": "input", "dtype": "float32", "shape": [-1, 30], "features": names}
    ]
    probs, label = spec["outputs"]
    assert probs == {
        "name": "probabilities",
        "dtype": "float32",
        "shape": [-1, 2],
        "labels": [0, 1],
    }
    assert label == {"name": "label", "dtype": "int64", "shape": [-1]}
    assert json.loads((tmp_path / "m" / "2" / "model.json").read_text())["config"]["n_hidden"] == 16
    with pytest.raises(ValueError, match="already exists"):
        save_model(model, tmp_path / "m", version=1)


def test_regression_and_kernel_models_round_trip(
    tmp_path: Path, diabetes: Split, digits: Split
) -> None:
    X, Xt, y, _ = diabetes
    reg = ELMRegressor(n_hidden=32).fit(X, y)
    save_model(reg, tmp_path / "reg", target="progression", onnx=False)
    spec = read_spec(tmp_path / "reg")
    assert spec["outputs"] == [
        {"name": "prediction", "dtype": "float32", "shape": [-1, 1], "targets": ["progression"]}
    ]
    assert spec["files"] == ["model.safetensors", "model.json"]
    np.testing.assert_array_equal(load_model(tmp_path / "reg").predict(Xt), reg.predict(Xt))
    X, Xt, y, _ = digits
    kernel = KernelELMClassifier(n_components=200).fit(X, y)
    save_model(kernel, tmp_path / "kernel")
    np.testing.assert_array_equal(
        load_model(tmp_path / "kernel" / "1").predict(Xt), kernel.predict(Xt)
    )


def test_string_labels_are_written_as_strings(tmp_path: Path, cancer: Split) -> None:
    X, _, y, _ = cancer
    model = ELMClassifier(n_hidden=8).fit(X, np.array(["no", "yes"])[y])
    save_model(model, tmp_path / "s")
    outputs = read_spec(tmp_path / "s")["outputs"]
    assert outputs[0]["labels"] == ["no", "yes"] and outputs[1]["dtype"] == "string"
    assert list(load_model(tmp_path / "s").classes_) == ["no", "yes"]


def test_toml_writer_escapes_and_parses() -> None:
    spec = {"name": 'we"ird\\name', "n": 3, "x": 0.5, "ok": True, "t": [{"a": [1, 2], "b": "é"}]}
    assert tomllib.loads(to_toml(spec)) == spec


def test_nothing_pickled_and_bad_folders_fail_clearly(tmp_path: Path, cancer: Split) -> None:
    X, _, y, _ = cancer
    folder = save_model(ELMClassifier(n_hidden=4).fit(X, y), tmp_path / "p")
    for f in folder.iterdir():
        assert not f.read_bytes().startswith(b"\x80")  # pickle protocol header
    with pytest.raises(FileNotFoundError, match="no saved ELM"):
        load_model(tmp_path / "nothing")
    with pytest.raises(ValueError, match="not fitted"):
        save_model(ELMClassifier(), tmp_path / "q")
