"""`augury info`: the bundled model's facts, as JSON and as text, and errors on bad paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from augury.cli.main import main
from augury.models.config import LlamaConfig, LoadedModel
from augury.models.loader.hf import save_hf


def run_info(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["info", "--json", *args]) == 0
    info: dict[str, object] = json.loads(capsys.readouterr().out)
    return info


def test_info_json_for_the_bundled_model(capsys: pytest.CaptureFixture[str]) -> None:
    info = run_info(capsys)
    assert info["format"] == "gguf" and info["architecture"] == "llama"
    assert info["quantization"] == "Q4_1"
    assert info["storage"] == {
        "Q4_1": {"tensors": 210, "parameters": 106_168_320},
        "Q8_0": {"tensors": 1, "parameters": 28_311_552},
        "F32": {"tensors": 61, "parameters": 35_136},
    }
    assert info["parameters"] == 134_515_008
    assert (info["layers"], info["heads"], info["kv_heads"], info["head_dim"]) == (30, 9, 3, 64)
    assert (info["hidden_size"], info["vocab_size"], info["context_length"]) == (576, 49152, 8192)
    assert info["tied_embeddings"] is True
    assert info["file_size"] == 98_362_432
    assert info["weights_memory"] == {"float32": 134_515_008 * 4, "bfloat16": 134_515_008 * 2}
    # 2 (K and V) * 30 layers * 3 KV heads * 64 dims * bytes per element
    assert info["kv_cache_per_token"] == {"float32": 46_080, "bfloat16": 23_040}


def test_info_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "Q4_1" in out and "134,515,008" in out and "8,192 tokens" in out
    assert "45.0 KiB float32 / 22.5 KiB bfloat16 per token" in out


def test_info_on_a_hugging_face_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
        num_kv_heads=2, max_position_embeddings=128,
    )  # fmt: skip
    tensors = {n: torch.zeros(s, dtype=torch.bfloat16) for n, s in cfg.expected_shapes().items()}
    save_hf(LoadedModel(cfg, tensors, "BF16"), tmp_path)
    info = run_info(capsys, str(tmp_path))
    n_params = sum(t.numel() for t in tensors.values())
    assert info["format"] == "safetensors" and info["quantization"] == "BF16"
    assert info["storage"] == {"BF16": {"tensors": len(tensors), "parameters": n_params}}
    assert info["kv_cache_per_token"] == {
        "float32": 2 * 2 * 2 * 8 * 4,
        "bfloat16": 2 * 2 * 2 * 8 * 2,
    }


@pytest.mark.parametrize("name", ["absent.gguf", "weights.bin"])
def test_info_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    if name.endswith(".bin"):
        (tmp_path / name).write_bytes(b"\x80\x04pickle")
    assert main(["info", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert name in err and ("not found" in err or "pickle" in err)
