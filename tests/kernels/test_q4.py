"""The INT4 kernel and the decode stack (augury/kernels/q4.h, q4.cpp) against independent math."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

from augury.kernels.loader import kernel_ops
from augury.llm.engine import AUTO_DENSE_ABOVE, EngineConfig, LLMEngine
from augury.llm.sampling_params import SamplingParams
from augury.models.config import LoadedModel
from augury.models.llama import LlamaModel, build_model
from augury.models.quant import QuantLinear, quantize_int4
from augury.models.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def ops() -> ModuleType:
    module = kernel_ops()
    assert module is not None, "the C++ kernels failed to build (see the log)"
    return module


def q8_reference(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """What the kernel computes, in float64 from the quantized weight's own numbers: per group
    of 32, sum(d * q * dx * xq) + m * sum(x), with x rounded to int8 per row and group
    (xq = round(x * 127 / max|x|), dx = max|x| / 127)."""
    codes, scales_and_zeros = quantize_int4(weight)
    scale = scales_and_zeros[..., 0].t().double()
    zero = scales_and_zeros[..., 1].t().double()
    d = scale.half().double()  # the kernel keeps Q4_1's float16 d and m
    m = (zero - 8 * scale).half().double()
    n, k = weight.shape
    g = k // 32
    xg = x.double().view(-1, g, 32)
    amax = xg.abs().amax(-1, keepdim=True)
    xq = torch.round(xg * torch.where(amax > 0, 127 / amax, torch.zeros_like(amax)))
    q = codes.double().view(n, g, 32)
    dot = torch.einsum("rgk,ngk->rng", xq, q)  # exact integers
    return (dot * (d[None] * (amax / 127).transpose(1, 2))).sum(-1) + xg.sum(-1) @ m.t()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("n", "k"), [(40, 96), (960, 576), (576, 1536), (33, 160)])
@pytest.mark.parametrize("rows", [1, 5, 8, 13])
def test_q4_linear_is_the_int8_activation_math(
    ops: ModuleType, dtype: torch.dtype, n: int, k: int, rows: int
) -> None:
    """Groups per row that are not a multiple of 4 (the masked tail) and more than 8 rows (two
    passes) included."""
    g = torch.Generator().manual_seed(n + k + rows)
    weight = torch.randn(n, k, generator=g) * 0.05
    layer = QuantLinear.from_weight(weight, "int4")
    assert layer.kernel == "q4"
    x = (torch.randn(rows, k, generator=g) * 2).to(dtype)
    x[0, :32] = 0  # an all-zero group: scale 0, no division by zero
    got = layer(x)
    assert got.dtype == dtype and got.shape == (rows, n)
    expected = q8_reference(x.float(), weight)
    tol = 1e-5 if dtype == torch.float32 else 2**-8  # bfloat16 output rounding
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol * expected.abs().max())


def test_q4_linear_stays_close_to_the_float_matmul(ops: ModuleType) -> None:
    """The price of int8 activations: under 1% of the outputs' spread on random data."""
    g = torch.Generator().manual_seed(7)
    weight = torch.randn(512, 576, generator=g) * 0.05
    layer = QuantLinear.from_weight(weight, "int4")
    x = torch.randn(4, 576, generator=g)
    exact = F.linear(x, layer.dequantized())
    assert float((layer(x) - exact).pow(2).mean().sqrt() / exact.std()) < 0.01


def test_q4_linear_refuses_bad_inputs_with_a_reason(ops: ModuleType) -> None:
    layer = QuantLinear.from_weight(torch.randn(8, 64), "int4")
    with pytest.raises(RuntimeError, match=r"x must be a \(M, 64\)"):
        ops.q4_linear(torch.zeros(2, 32), layer.codes, layer.scales)
    with pytest.raises(RuntimeError, match="uint8"):
        ops.q4_linear(torch.zeros(2, 64), layer.codes.int(), layer.scales)
    with pytest.raises(RuntimeError, match="int16"):
        ops.q4_linear(torch.zeros(2, 64), layer.codes, layer.scales.float())


@pytest.fixture(scope="module")
def int4_model(weights: LoadedModel) -> LlamaModel:
    """The engine's default for the bundled Q4_1 checkpoint (INT4 up to AUTO_DENSE_ABOVE rows)."""
    return build_model(
        weights.config,
        weights.tensors,
        torch.bfloat16,
        quantization="int4",
        dense_above=AUTO_DENSE_ABOVE,
    )


def _generate(
    model: LlamaModel, tokenizer: Tokenizer, prompts: list[str], **config: object
) -> list[list[int]]:
    engine = LLMEngine(model, tokenizer, EngineConfig(kv_cache_memory=32 << 20, **config))  # type: ignore[arg-type]
    params = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True)
    for i, p in enumerate(prompts):
        engine.add_request(str(i), tokenizer.encode(p), params)
    tokens: dict[str, list[int]] = {str(i): [] for i in range(len(prompts))}
    while engine.has_unfinished():
        for out in engine.step():
            for delta in out.outputs:
                tokens[out.request_id] += delta.token_ids
    return [tokens[str(i)] for i in range(len(prompts))]


PROMPTS = [
    "The capital of France is",
    "Repeat after me: one two three four, one two three four, one two three four, one two",
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):",
]


def test_decode_stack_generates_what_the_layer_by_layer_path_does(
    int4_model: LlamaModel, tokenizer: Tokenizer
) -> None:
    """Three sequences of different lengths decoding together: the same tokens with every layer
    in one C++ call as with the Python layer loop over the same kernels."""
    assert int4_model.use_decode_stack
    stacked = _generate(int4_model, tokenizer, PROMPTS, speculative_tokens=0)
    assert int4_model._stack is not None  # the stack did run
    int4_model.use_decode_stack = False
    int4_model._stack_key = None
    try:
        assert _generate(int4_model, tokenizer, PROMPTS, speculative_tokens=0) == stacked
    finally:
        int4_model.use_decode_stack = True
        int4_model._stack_key = None


def test_speculative_greedy_through_the_stack_is_exact(
    int4_model: LlamaModel, tokenizer: Tokenizer
) -> None:
    """Verification rows (one sequence, several tokens) go through the stack too."""
    plain = _generate(int4_model, tokenizer, PROMPTS[1:], speculative_tokens=0)
    assert _generate(int4_model, tokenizer, PROMPTS[1:], speculative_tokens=4) == plain


def test_decode_stack_refuses_out_of_range_rows(ops: ModuleType, int4_model: LlamaModel) -> None:
    caches = [(torch.zeros(3, 4, 16, 64, dtype=torch.bfloat16),) * 2 for _ in int4_model.layers]
    stack = int4_model._build_decode_stack(caches)
    assert stack is not None
    residual = torch.zeros(1, 576, dtype=torch.bfloat16)
    table = torch.zeros(1, 64, dtype=torch.bfloat16)
    one = torch.ones(1, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="slot 64 out of range"):
        stack.forward(residual, table, table, one * 64, torch.zeros(1, 2, dtype=torch.int64), one)
    with pytest.raises(RuntimeError, match="context length 40 out of range"):
        stack.forward(residual, table, table, one, torch.zeros(1, 2, dtype=torch.int64), one * 40)
    with pytest.raises(RuntimeError, match="block id out of range"):
        stack.forward(residual, table, table, one, torch.full((1, 2), 9), one * 20)
