"""Hugging Face checkpoints: save_hf/load_hf round trips, refusals, and load_weights dispatch.

The reference is transformers itself: it must load what save_hf writes and compute the same
logits as our model (the `slow` tests).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from augury.llm.batch import SeqWork, build_step_batch
from augury.llm.kv_cache import allocate_kv_caches
from augury.models.config import LlamaConfig, LoadedModel
from augury.models.default import default_model_path
from augury.models.llama import LlamaModel, build_model
from augury.models.loader import load_weights, summarize_weights
from augury.models.loader.hf import HFCheckpointError, load_hf, save_hf

PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365]


def last_logits(model: LlamaModel, prompt: list[int], block_size: int = 16) -> torch.Tensor:
    """Prefill one prompt through the paged path; the last position's logits."""
    blocks = -(-len(prompt) // block_size)
    caches = allocate_kv_caches(model.cfg, blocks, block_size, model.dtype, model.device)
    batch = build_step_batch(
        [SeqWork(prompt, 0, list(range(blocks)))], [], block_size, model.device
    )
    with torch.inference_mode():
        hidden = model(batch.input_ids, batch.positions, caches, batch.meta)
        return model.compute_logits(hidden[batch.logits_index])[0]


def tiny_loaded(tie: bool = False, seed: int = 0) -> LoadedModel:
    """A random 2-layer GQA llama, small enough to write and load in milliseconds."""
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
        num_kv_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=500.0,
        tie_word_embeddings=tie, bos_token_id=1, eos_token_ids=(2, 3),
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    tensors = {n: torch.randn(s, generator=g) * 0.2 for n, s in cfg.expected_shapes().items()}
    return LoadedModel(cfg, tensors, "F32", {})


@pytest.fixture(scope="module")
def saved_default(weights: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model, dequantized to float32, saved as a Hugging Face checkpoint."""
    return save_hf(weights, tmp_path_factory.mktemp("smollm2-hf"))


def test_default_round_trip(weights: LoadedModel, saved_default: Path) -> None:
    loaded = load_hf(saved_default)
    assert loaded.config == weights.config
    assert loaded.quantization == "F32"
    assert loaded.tensors.keys() == weights.tensors.keys()
    for name, values in weights.tensors.items():
        assert torch.equal(loaded.tensors[name], values), name


def test_default_logits_match_gguf_model(model_fp32: LlamaModel, saved_default: Path) -> None:
    loaded = load_weights(saved_default)
    model = build_model(loaded.config, loaded.tensors)
    assert torch.equal(last_logits(model, PROMPT), last_logits(model_fp32, PROMPT))


@pytest.mark.slow
def test_transformers_loads_saved_default(model_fp32: LlamaModel, saved_default: Path) -> None:
    from transformers import LlamaForCausalLM

    ref = LlamaForCausalLM.from_pretrained(saved_default, dtype=torch.float32)
    with torch.inference_mode():
        want = ref(torch.tensor([PROMPT])).logits[0, -1]
    torch.testing.assert_close(last_logits(model_fp32, PROMPT), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("tie", [False, True])
def test_transformers_loads_saved_tiny(tmp_path: Path, tie: bool) -> None:
    from transformers import LlamaForCausalLM

    loaded = tiny_loaded(tie)
    save_hf(loaded, tmp_path)
    ref = LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    prompt = [1, 5, 9, 33, 2, 60, 7]
    with torch.inference_mode():
        want = ref(torch.tensor([prompt])).logits[0, -1]
    ours = last_logits(build_model(loaded.config, loaded.tensors), prompt)
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=0)


def test_sharded_checkpoint(tmp_path: Path) -> None:
    loaded = tiny_loaded()
    save_hf(loaded, tmp_path)
    (tmp_path / "model.safetensors").unlink()
    names = sorted(loaded.tensors)
    shards = {
        "model-00001-of-00002.safetensors": names[::2],
        "model-00002-of-00002.safetensors": names[1::2],
    }
    for file, part in shards.items():
        save_file({n: loaded.tensors[n] for n in part}, tmp_path / file, metadata={"format": "pt"})
    weight_map = {n: file for file, part in shards.items() for n in part}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    back = load_hf(tmp_path, torch.bfloat16)
    assert back.config == loaded.config
    for name, values in loaded.tensors.items():
        assert torch.equal(back.tensors[name], values.to(torch.bfloat16)), name


def test_bfloat16_checkpoint_and_summary(tmp_path: Path) -> None:
    loaded = tiny_loaded(tie=True)
    bf16 = {n: t.to(torch.bfloat16) for n, t in loaded.tensors.items()}
    save_hf(LoadedModel(loaded.config, bf16, "BF16"), tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert load_hf(tmp_path).quantization == "BF16"
    summary = summarize_weights(tmp_path)
    n_params = sum(t.numel() for t in loaded.tensors.values())
    assert summary.format == "safetensors"
    assert summary.storage == {"BF16": (len(loaded.tensors), n_params)}
    assert summary.file_size == sum(p.stat().st_size for p in tmp_path.iterdir())


# --- refusals, each naming the key, tensor or file -----------------------------------------------


def saved_tiny(tmp_path: Path) -> Path:
    return save_hf(tiny_loaded(), tmp_path / "ckpt")


def edit_config(path: Path, **changes: object) -> None:
    cfg = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if value is ...:
            del cfg[key]
        else:
            cfg[key] = value
    (path / "config.json").write_text(json.dumps(cfg))


def load_error(path: Path) -> str:
    with pytest.raises(HFCheckpointError) as info:
        load_hf(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model_type", "mistral"),
        ("hidden_size", ...),
        ("num_hidden_layers", 0),
        ("num_attention_heads", "4"),
        ("num_key_value_heads", 3),
        ("rms_norm_eps", float("nan")),
        ("rope_theta", -1.0),
        ("rope_parameters", {"rope_type": "llama3", "factor": 8.0}),
        ("rope_scaling", {"type": "linear", "factor": 2.0}),
        ("attention_bias", True),
        ("hidden_act", "gelu"),
        ("eos_token_id", [2, 99]),
        ("tie_word_embeddings", "yes"),
    ],
)
def test_bad_config(tmp_path: Path, key: str, value: object) -> None:
    path = saved_tiny(tmp_path)
    edit_config(path, **{key: value})
    assert f"'{key}'" in load_error(path)


def rewrite_weights(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def test_wrong_shape_missing_unknown_and_dtype(tmp_path: Path) -> None:
    path = saved_tiny(tmp_path)
    tensors = dict(tiny_loaded().tensors)
    name = "model.layers.1.mlp.up_proj.weight"
    rewrite_weights(path, {**tensors, name: tensors[name][:8]})
    assert f"'{name}'" in load_error(path) and "(8, 32)" in load_error(path)
    rewrite_weights(path, {n: t for n, t in tensors.items() if n != name})
    assert f"'{name}'" in load_error(path) and "missing" in load_error(path)
    rewrite_weights(path, {**tensors, "model.layers.0.self_attn.q_proj.bias": torch.zeros(32)})
    assert "'model.layers.0.self_attn.q_proj.bias'" in load_error(path)
    rewrite_weights(path, {**tensors, name: tensors[name].to(torch.int32)})
    assert f"'{name}'" in load_error(path) and "I32" in load_error(path)
    bad = tensors[name].clone()
    bad[3, 4] = float("inf")
    rewrite_weights(path, {**tensors, name: bad})
    assert f"'{name}'" in load_error(path) and "infinite" in load_error(path)


def test_pickle_checkpoint_is_refused(tmp_path: Path) -> None:
    path = saved_tiny(tmp_path)
    (path / "model.safetensors").unlink()
    (path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    message = load_error(path)
    assert "pytorch_model.bin" in message and "pickle" in message and "safetensors" in message
    with pytest.raises(ValueError, match="pickle"):
        load_weights(path / "pytorch_model.bin")


def test_corrupt_safetensors(tmp_path: Path) -> None:
    path = saved_tiny(tmp_path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert "model.safetensors" in load_error(path)
    (path / "model.safetensors").write_bytes(b"\xff" * 64)
    assert "model.safetensors" in load_error(path)


def test_index_cannot_escape_the_directory(tmp_path: Path) -> None:
    path = saved_tiny(tmp_path)
    weight_map = dict.fromkeys(tiny_loaded().tensors, "../elsewhere.safetensors")
    (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert "../elsewhere.safetensors" in load_error(path)


def test_save_refuses_a_directory_with_another_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(HFCheckpointError, match="index"):
        save_hf(tiny_loaded(), tmp_path)


# --- load_weights: the format comes from what the path holds ------------------------------------


def test_load_weights_dispatch(tmp_path: Path) -> None:
    tiny = saved_tiny(tmp_path)
    assert load_weights(tiny).config == tiny_loaded().config
    renamed = tmp_path / "model.bin.weird"
    renamed.symlink_to(default_model_path())  # a GGUF is recognized by its magic
    assert summarize_weights(renamed).format == "gguf"
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "absent")
    with pytest.raises(ValueError, match=r"without config\.json"):
        load_weights(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a model"):
        load_weights(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="directory"):
        load_weights(tiny / "model.safetensors")


def test_summaries_agree_across_formats(weights: LoadedModel, saved_default: Path) -> None:
    gguf, hf = summarize_weights(default_model_path()), summarize_weights(saved_default)
    assert gguf.config == hf.config == weights.config
    assert gguf.num_parameters == hf.num_parameters == 134_515_008
    assert gguf.quantization == "Q4_1" and hf.storage == {"F32": (272, 134_515_008)}


@pytest.mark.parametrize("drop", ["rope_theta", "rope_parameters"])
def test_config_styles_of_transformers_4_and_5(tmp_path: Path, drop: str) -> None:
    """transformers 4 writes a top-level rope_theta, 5 writes rope_parameters; both load."""
    path = saved_tiny(tmp_path)
    edit_config(path, **{drop: ..., "rope_scaling": None})
    assert load_hf(path).config.rope_theta == 500.0
    edit_config(path, **{"rope_theta" if drop != "rope_theta" else "rope_parameters": ...})
    assert load_hf(path).config.rope_theta == 10000.0  # the default, as in transformers
