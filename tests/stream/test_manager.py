"""Session specs from open frames: the model's default window, then the server's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from augury.elm import ELMRegressor, save_model
from augury.stream.config import StreamConfig
from augury.stream.manager import StreamManager
from augury.stream.protocol import FrameError, OpenFrame


def open_frame(model: str, **extra: Any) -> OpenFrame:
    return OpenFrame.model_validate({"type": "open", "model": model, "channels": ["x"], **extra})


def model_folder(root: Path, name: str, stream_table: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 10))
    save_model(ELMRegressor(n_hidden=8).fit(X, X[:, 0]), root / name, onnx=False)
    with (root / name / "model.toml").open("a") as f:
        f.write(stream_table)


@pytest.fixture
def manager(tmp_path: Path) -> StreamManager:
    model_folder(
        tmp_path, "vib", '\n[stream]\nwindow = { kind = "time", size = 2, stride = 0.5 }\n'
    )
    model_folder(tmp_path, "plain", "")
    model_folder(
        tmp_path, "bad", '\n[stream]\nwindow = { kind = "count", size = 2.5, stride = 1 }\n'
    )
    config = StreamConfig(models_dir=tmp_path, default_window=("count", 16, 4))
    return StreamManager(config)


def window(manager: StreamManager, frame: OpenFrame) -> tuple[str, float, float]:
    spec = manager.spec_of(frame)
    return spec.window_kind, spec.window_size, spec.window_stride


def test_open_without_window_gets_the_models_default(manager: StreamManager) -> None:
    assert window(manager, open_frame("vib")) == ("time", 2.0, 0.5)


def test_models_without_one_get_the_servers_default(manager: StreamManager) -> None:
    assert window(manager, open_frame("plain")) == ("count", 16.0, 4.0)
    assert window(manager, open_frame("zscore")) == ("count", 16.0, 4.0)


def test_a_declared_window_wins(manager: StreamManager) -> None:
    frame = open_frame("vib", window={"kind": "count", "size": 8, "stride": 8})
    assert window(manager, frame) == ("count", 8.0, 8.0)


def test_a_bad_model_window_is_refused_naming_the_fix(manager: StreamManager) -> None:
    with pytest.raises(ValueError, match=r"model 'bad' declares a bad default window.*whole"):
        manager.spec_of(open_frame("bad"))
    with pytest.raises(FrameError, match="declares a bad default window") as info:
        manager.open(open_frame("bad"), "k")
    assert info.value.code == "invalid_open"
