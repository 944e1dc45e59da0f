"""`augury export` folders (augury/models/export.py): what they hold and that they serve alike."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from augury.cli.main import main
from augury.llm.engine import load_model_and_tokenizer
from augury.models.config import LoadedModel
from augury.models.export import QUANT_KEY, export_model, exported_quantization
from augury.models.llama import LlamaModel, build_model
from augury.models.loader import load_weights
from augury.models.quant import Q8Embedding, Q8Table, QuantLinear, dequantize_q8_0
from augury.models.tokenizer import Tokenizer
from tests.models.test_llama_golden import last_logits

PROMPT = [1, 504, 3458, 282, 4649, 314, 253, 1789, 10180]


@pytest.fixture(scope="module")
def int4_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model(None, tmp_path_factory.mktemp("export") / "int4", "int4")


def test_int4_folder_holds_codes_tokenizer_and_config(int4_dir: Path, weights: LoadedModel) -> None:
    names = sorted(p.name for p in int4_dir.iterdir())
    assert names == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    config = json.loads((int4_dir / "config.json").read_text())
    assert config[QUANT_KEY] == {"mode": "int4", "group_size": 32}
    assert exported_quantization(int4_dir) == "int4"
    # Codes two to a byte plus bfloat16 scales: well under half the float16 size of the model.
    params = sum(t.numel() for t in weights.tensors.values())
    assert (int4_dir / "model.safetensors").stat().st_size < params * 2 * 0.5
    tokenizer = Tokenizer.from_dir(int4_dir)
    original = Tokenizer.from_gguf_metadata(weights.metadata)
    assert tokenizer.chat_template == original.chat_template is not None
    text = "The capital of France, 2024: Paris!"
    assert tokenizer.encode(text) == original.encode(text)


def test_int4_folder_serves_exactly_what_in_process_int4_does(
    int4_dir: Path, weights: LoadedModel
) -> None:
    exported, tokenizer = load_model_and_tokenizer(str(int4_dir), torch.bfloat16, "cpu")
    assert isinstance(exported.layers[0].self_attn.qkv_proj, QuantLinear)
    assert exported.layers[0].mlp.gate_up_proj.dense is None  # no float copy of the linears
    direct = build_model(weights.config, weights.tensors, torch.bfloat16, quantization="int4")
    assert isinstance(exported.lm_head, Q8Table) and isinstance(exported.embed_tokens, Q8Embedding)
    assert exported.embed_tokens.table is exported.lm_head  # tied: one table
    assert torch.equal(last_logits(exported, PROMPT), last_logits(direct, PROMPT))
    assert tokenizer.eos_token_ids


def test_a_folder_with_a_bfloat16_embedding_still_loads(
    int4_dir: Path, tmp_path: Path, weights: LoadedModel
) -> None:
    """Exports from before 2026-11-23 hold the embedding as a bfloat16 `.weight`; it is
    requantized to the Q8_0 table on load (the model then computes what a fresh export does, to
    the bfloat16 rounding of the embedding)."""
    old = tmp_path / "old"
    shutil.copytree(int4_dir, old)
    tensors = load_file(str(old / "model.safetensors"))
    codes, d = tensors.pop("model.embed_tokens.codes"), tensors.pop("model.embed_tokens.scales")
    tensors["model.embed_tokens.weight"] = dequantize_q8_0(codes, d).to(torch.bfloat16)
    save_file(tensors, str(old / "model.safetensors"))
    model, _ = load_model_and_tokenizer(str(old), torch.bfloat16, "cpu")
    fresh, _ = load_model_and_tokenizer(str(int4_dir), torch.bfloat16, "cpu")
    assert isinstance(model.lm_head, Q8Table)
    a, b = last_logits(model, PROMPT), last_logits(fresh, PROMPT)
    assert int(a.argmax()) == int(b.argmax())
    assert float((a - b).abs().max()) < 0.05 * float(b.std())


def test_plain_export_is_a_bfloat16_hugging_face_checkpoint(
    tmp_path: Path, model_fp32: LlamaModel
) -> None:
    out = export_model(None, tmp_path / "plain", "none")
    assert exported_quantization(out) is None
    loaded = load_weights(out)
    assert loaded.quantization == "BF16"
    model = build_model(loaded.config, loaded.tensors, torch.float32)
    reference = last_logits(model_fp32, PROMPT)
    torch.testing.assert_close(last_logits(model, PROMPT), reference, rtol=0, atol=0.5)


def test_export_refuses_a_used_folder_and_a_mismatched_quantization(
    tmp_path: Path, int4_dir: Path
) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        export_model(None, tmp_path / "busy", "int8")
    with pytest.raises(ValueError, match="holds int4 weights"):
        load_model_and_tokenizer(str(int4_dir), torch.bfloat16, "cpu", quantization="int8")
    with pytest.raises(ValueError, match="bfloat16 on the CPU"):
        load_model_and_tokenizer(str(int4_dir), torch.float32, "cpu")


def test_cli_exports_an_int8_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "int8"), "--quantize", "int8"]) == 0
    assert "augury serve --model" in capsys.readouterr().out
    assert exported_quantization(tmp_path / "int8") == "int8"
    model, _ = load_model_and_tokenizer(str(tmp_path / "int8"), torch.bfloat16, "cpu")
    assert model.layers[5].mlp.down_proj.mode == "int8"
