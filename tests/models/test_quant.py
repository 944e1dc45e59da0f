"""Weight-only INT4/INT8 linears (augury/models/quant.py) and their effect on the real model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from augury.llm.engine import AUTO_DENSE_ABOVE, EngineConfig, auto_quantization
from augury.models.config import LoadedModel
from augury.models.evaluate import perplexity
from augury.models.llama import LlamaModel, build_model
from augury.models.quant import QuantLinear, quantize_int4, quantize_int8, quantize_linears
from augury.models.tokenizer import Tokenizer


def _q4_1_like(rows: int, groups: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights as GGUF Q4_1 stores them, w = d * q + m with fp16 d and m, each group using codes
    0 and 15 (min and max); returns (weights (rows, groups * 32), codes)."""
    g = torch.Generator().manual_seed(seed)
    d = (torch.rand(rows, groups, generator=g) * 0.1).half().float()
    m = (-torch.rand(rows, groups, generator=g)).half().float()
    codes = torch.randint(0, 16, (rows, groups, 32), generator=g)
    codes[..., 0], codes[..., 1] = 0, 15
    return (d[..., None] * codes + m[..., None]).view(rows, -1), codes


def test_int4_requantization_recovers_q4_1_codes_exactly() -> None:
    w, codes = _q4_1_like(64, 6)
    got, scales_and_zeros = quantize_int4(w)
    assert torch.equal(got.view(64, 6, 32), codes.to(torch.int32))
    scale, zero = scales_and_zeros[..., 0].t(), scales_and_zeros[..., 1].t()  # (rows, groups)
    dequant = (got.view(64, 6, 32) - 8) * scale[..., None] + zero[..., None]
    torch.testing.assert_close(dequant.view(64, -1), w, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["int4", "int8"])
def test_quant_linear_equals_a_float_matmul_with_its_dequantized_weight(mode: str) -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(96, 128, generator=g)
    layer = QuantLinear.from_weight(w, mode)  # type: ignore[arg-type]
    x = torch.randn(5, 128, generator=g)
    _assert_matmul(layer, x)
    # The codes are close to the weight: INT8 to 1/254 of each row's range, INT4 to 1/30 of a
    # group's.
    err = (layer.dequantized() - w).abs()
    bound = w.abs().amax(1, keepdim=True) / 254 if mode == "int8" else w.abs().amax() * 2 / 30
    assert bool((err <= bound + 1e-6).all())


def test_quant_linear_uses_its_dense_weight_above_the_row_threshold() -> None:
    g = torch.Generator().manual_seed(2)
    w = torch.randn(64, 64, generator=g)
    layer = QuantLinear.from_weight(w, "int4", dense_above=4)
    few, many = torch.randn(4, 64, generator=g), torch.randn(5, 64, generator=g)
    _assert_matmul(layer, few)
    assert not torch.equal(layer(few), F.linear(few, w))
    torch.testing.assert_close(layer(many), F.linear(many, w))


def _assert_matmul(layer: QuantLinear, x: torch.Tensor) -> None:
    """x @ the dequantized weight: to rounding with PyTorch's kernels; within 3% of the
    outputs' spread on Augury's INT4 kernel, which rounds x to int8 per group of 32 (its exact
    arithmetic is tested in tests/kernels/test_q4.py)."""
    exact = F.linear(x, layer.dequantized())
    if layer.kernel == "torch":
        torch.testing.assert_close(layer(x), exact, rtol=1e-5, atol=1e-4)
    else:  # (few columns here: the relative error is larger than at the model's widths)
        assert float((layer(x) - exact).pow(2).mean().sqrt() / exact.std()) < 0.03


def test_quantize_linears_swaps_all_but_the_lm_head_and_refuses_bad_modes() -> None:
    model = nn.Sequential(nn.Linear(32, 32, bias=False), nn.Linear(32, 32, bias=True))
    model.add_module("lm_head", nn.Linear(32, 8, bias=False))
    assert quantize_linears(model, "int8") == 1  # the biased one and the LM head stay
    assert isinstance(model[0], QuantLinear) and isinstance(model.lm_head, nn.Linear)
    with pytest.raises(ValueError, match="quantization must be one of"):
        quantize_linears(model, "int3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multiple of the INT4 group"):
        quantize_int4(torch.zeros(4, 40))
    codes, scales = quantize_int8(torch.zeros(3, 8))  # all-zero rows: no division by zero
    assert not codes.any() and not scales.any()


def test_auto_quantization_is_int4_only_where_lossless(weights: LoadedModel) -> None:
    assert weights.quantization == "Q4_1"
    assert auto_quantization(weights, torch.bfloat16, "cpu", None) == ("int4", AUTO_DENSE_ABOVE)
    assert auto_quantization(weights, torch.bfloat16, "cpu", 2) == ("int4", 2)
    assert auto_quantization(weights, torch.float32, "cpu", None) == ("none", None)
    assert auto_quantization(weights, torch.bfloat16, "cuda", None) == ("none", None)
    f32 = LoadedModel(weights.config, {}, "F32")
    assert auto_quantization(f32, torch.bfloat16, "cpu", None) == ("none", None)


def test_engine_config_names_a_bad_quantization() -> None:
    with pytest.raises(ValueError, match="quantization must be one of auto, none, int8, int4"):
        EngineConfig(quantization="fp8")
    with pytest.raises(ValueError, match="quantized_max_rows"):
        EngineConfig(quantization="int4", quantized_max_rows=0)


@pytest.fixture(scope="module")
def text_ids(tokenizer: Tokenizer) -> list[int]:
    from augury.predict.examples.text import bbc_news

    texts, _ = bbc_news()
    return tokenizer.encode("\n\n".join(texts[i] for i in range(0, 2225, 400)))[:1024]


def test_int4_of_the_bundled_q4_1_checkpoint_is_lossless(weights: LoadedModel) -> None:
    """The bundled GGUF's linears are Q4_1: INT4 requantization gets their codes back, so the
    INT4 layers stand for exactly the float32 weights (before the scales' bfloat16 cast)."""
    model = LlamaModel(weights.config)
    model.load_weights(weights.tensors)
    layer = model.layers[3].mlp.gate_up_proj
    dense = layer.weight.detach().clone()
    assert quantize_linears(model, "int4") == 4 * weights.config.num_layers
    quant = model.layers[3].mlp.gate_up_proj
    assert isinstance(quant, QuantLinear)
    torch.testing.assert_close(quant.dequantized(), dense, rtol=0, atol=1e-5)


def test_quantization_needs_bfloat16(weights: LoadedModel) -> None:
    with pytest.raises(ValueError, match="needs dtype bfloat16"):
        build_model(weights.config, weights.tensors, dtype=torch.float32, quantization="int8")


@pytest.mark.slow
def test_int8_perplexity_within_two_percent_of_float32(
    weights: LoadedModel, model_fp32: LlamaModel, text_ids: list[int]
) -> None:
    """The issue's accuracy goal for INT8 weights (bfloat16 activations, as served)."""
    int8 = build_model(weights.config, weights.tensors, dtype=torch.bfloat16, quantization="int8")
    base = perplexity(model_fp32, text_ids)
    assert 5 < base < 60  # a sane English text for a small instruct model
    assert perplexity(int8, text_ids) <= base * 1.02
