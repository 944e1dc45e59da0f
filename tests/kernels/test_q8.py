"""The Q8_0 kernel (augury/kernels/q8.h, q8.cpp) and the embedding / LM head table on it
(augury.models.quant.Q8Table), against independent math and the GGUF file's own codes."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from augury.kernels.loader import kernel_ops
from augury.models.config import LoadedModel
from augury.models.default import default_model_path
from augury.models.quant import (
    Q8_HEAD_MAX_ROWS,
    Q8Table,
    from_q8_layout,
    quantize_q8_0,
    to_q8_layout,
)


@pytest.fixture(scope="module")
def ops() -> ModuleType:
    module = kernel_ops()
    assert module is not None, "the C++ kernels failed to build (see the log)"
    return module


def reference(x: torch.Tensor, codes: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """What the kernel computes, in float64: per group of 32, d * q . xq * dx with x rounded to
    int8 per row and group (xq = round(x * (127 / max|x|)), dx = max|x| / 127), rounded in
    float32 as the kernel does."""
    n, k = codes.shape
    g = k // 32
    x32 = x.float().view(-1, g, 32)
    amax32 = x32.abs().amax(-1, keepdim=True)
    xq = torch.round(x32 * torch.where(amax32 > 0, 127 / amax32, torch.zeros_like(amax32)))
    xq, amax = xq.double(), amax32.double()
    dot = torch.einsum("rgk,ngk->rng", xq, codes.double().view(n, g, 32))  # exact integers
    return (dot * d.double()[None] * (amax / 127).transpose(1, 2)).sum(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("n", "k"), [(40, 96), (300, 576), (129, 1536), (33, 160), (7, 32)])
@pytest.mark.parametrize("rows", [1, 5, 8, 13])
def test_q8_linear_is_the_int8_activation_math(
    ops: ModuleType, dtype: torch.dtype, n: int, k: int, rows: int
) -> None:
    """Tails of 1-3 groups per row (masked loads), more than 8 rows (two passes) and more
    weight rows than one tile included; the output is float32 whatever x is."""
    g = torch.Generator().manual_seed(n + k + rows)
    codes, d = quantize_q8_0(torch.randn(n, k, generator=g) * 0.05)
    table = Q8Table(codes, d)
    x = (torch.randn(rows, k, generator=g) * 2).to(dtype)
    x[0, :32] = 0  # an all-zero group: scale 0, no division by zero
    got = table(x)
    assert got.dtype == torch.float32 and got.shape == (rows, n)
    expected = reference(x.float(), codes, d)
    # bfloat16 x lands on rounding ties of x * 127 / max|x| often, where the kernel's float32
    # arithmetic (-ffast-math) may round the other way: a code off by one now and then
    tol = 1e-5 if dtype == torch.float32 else 2**-8
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol * expected.abs().max())


def test_q8_linear_stays_close_to_the_float_matmul() -> None:
    """The price of int8 activations: under 1% of the outputs' spread on random data."""
    g = torch.Generator().manual_seed(3)
    table = Q8Table.from_weight(torch.randn(1000, 576, generator=g) * 0.05)
    x = torch.randn(4, 576, generator=g)
    exact = F.linear(x, table.dequantized())
    assert float((table(x) - exact).pow(2).mean().sqrt() / exact.std()) < 0.01


def test_the_layout_round_trips_and_rows_are_the_dequantized_weight() -> None:
    g = torch.Generator().manual_seed(5)
    for k in (32, 64, 96, 128, 160, 576):
        codes, d = quantize_q8_0(torch.randn(50, k, generator=g))
        back, back_d = from_q8_layout(*to_q8_layout(codes, d))
        assert torch.equal(back, codes) and torch.equal(back_d, d)
        table = Q8Table(codes, d)
        ids = torch.tensor([[0, 49], [7, 7]])
        rows = table.rows(ids)
        assert rows.shape == (2, 2, k) and rows.dtype == torch.bfloat16
        assert torch.equal(rows, table.dequantized()[ids].to(torch.bfloat16))
        torch.testing.assert_close(
            table.dequantized(), codes.float() * d.float().repeat_interleave(32, 1)
        )


def test_q8_0_requantization_recovers_the_gguf_codes_exactly(weights: LoadedModel) -> None:
    """The bundled file stores the tied embedding in Q8_0: quantizing its float32 dequantization
    gives back the file's codes and scales (read by the gguf package, independently)."""
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(str(default_model_path()))
    (tensor,) = [t for t in reader.tensors if t.name == "token_embd.weight"]
    assert tensor.tensor_type == gguf.GGMLQuantizationType.Q8_0
    raw = np.asarray(tensor.data).reshape(-1, 34)  # per block: float16 d, 32 int8 codes
    file_d = torch.from_numpy(raw[:, :2].copy().view(np.float16)).view(49152, -1)
    file_q = torch.from_numpy(raw[:, 2:].copy().view(np.int8)).view(49152, -1)
    codes, d = quantize_q8_0(weights.tensors["model.embed_tokens.weight"])
    assert torch.equal(codes, file_q) and torch.equal(d, file_d)


def test_the_table_uses_its_dense_weight_above_the_row_threshold() -> None:
    g = torch.Generator().manual_seed(9)
    weight = torch.randn(64, 96, generator=g)
    table = Q8Table.from_weight(weight, keep_dense=True)
    assert table.dense is not None
    table.dense.weight.data.zero_()  # tell the paths apart
    few = torch.randn(Q8_HEAD_MAX_ROWS, 96, generator=g)
    many = torch.randn(Q8_HEAD_MAX_ROWS + 1, 96, generator=g)
    assert table(few).abs().sum() > 0 and table(many).abs().sum() == 0


def test_q8_ops_refuse_bad_inputs_with_a_reason(ops: ModuleType) -> None:
    table = Q8Table.from_weight(torch.randn(8, 64))
    with pytest.raises(RuntimeError, match=r"x must be a \(M, 64\)"):
        ops.q8_linear(torch.zeros(2, 32), table.codes, table.scales)
    with pytest.raises(RuntimeError, match="token id 8 out of range"):
        table.rows(torch.tensor([8]))
    with pytest.raises(RuntimeError, match="INT8 scales must be"):
        ops.q8_linear(torch.zeros(2, 64), table.codes, table.scales[:, :1].contiguous())
    with pytest.raises(ValueError, match="multiple of the Q8_0 group size"):
        quantize_q8_0(torch.randn(4, 40))
