"""The fused C++ ops (augury/kernels/fused.cpp) against the torch op chains they replace."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

from augury.kernels.loader import kernel_ops
from augury.llm.engine import LLMEngine
from augury.llm.sampling_params import SamplingParams
from augury.models.layers import RMSNorm, Rotary

DTYPES = [torch.float32, torch.bfloat16]


@pytest.fixture(scope="module")
def ops() -> ModuleType:
    module = kernel_ops()
    assert module is not None, "the C++ kernels failed to build (see the log)"
    return module


def _close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    """float32: to rounding; bfloat16: equal but for rare one-ulp ties (summation order)."""
    if dtype == torch.float32:
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
        return
    # One bfloat16 ulp is 2^-8..2^-7 relative.
    torch.testing.assert_close(actual.float(), expected.float(), rtol=2**-6, atol=1e-5)
    assert (actual == expected).float().mean() > 0.995


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_x", [True, False])
def test_add_rms_norm_matches_add_then_norm(
    ops: ModuleType, dtype: torch.dtype, with_x: bool
) -> None:
    g = torch.Generator().manual_seed(0)
    norm = RMSNorm(576, 1e-5)
    norm.weight.data = (torch.rand(576, generator=g) + 0.5).to(dtype)
    residual = (torch.randn(37, 576, generator=g) * 3).to(dtype)
    x = (torch.randn(37, 576, generator=g) * 3).to(dtype) if with_x else None
    expected_res = residual + x if x is not None else residual.clone()
    expected = norm.forward(expected_res)
    out = ops.add_rms_norm(x, residual, norm.weight, norm.eps)
    assert torch.equal(residual, expected_res)  # the residual add, updated in place
    _close(out, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotary_cache_write_matches_rotate_and_index_copy(
    ops: ModuleType, dtype: torch.dtype
) -> None:
    heads, kv_heads, hd, t = 9, 3, 64, 11
    g = torch.Generator().manual_seed(1)
    rotary = Rotary(hd, 4096, 100_000.0)
    positions = torch.randint(0, 4096, (t,), generator=g)
    rope = rotary.tables(positions, dtype)
    qkv = torch.randn(t, (heads + 2 * kv_heads) * hd, generator=g).to(dtype)
    caches = torch.zeros(2, kv_heads, 8, 16, hd, dtype=dtype)  # (k|v, n_kv, blocks, bs, hd)
    slots = torch.randperm(8 * 16, generator=g)[:t]

    ref = qkv.view(t, heads + 2 * kv_heads, hd)
    qk = Rotary.rotate(ref[:, : heads + kv_heads], rope)
    expected_caches = torch.zeros_like(caches)
    for i, part in enumerate((qk[:, heads:], ref[:, heads + kv_heads :])):
        expected_caches[i].view(kv_heads, -1, hd).index_copy_(1, slots, part.transpose(0, 1))

    fused = qkv.clone()
    ops.rotary_cache_write(fused, rope[0], rope[1], caches[0], caches[1], slots, heads, kv_heads)
    got = fused.view(t, heads + 2 * kv_heads, hd)
    # bfloat16: the same roundings in the same order as the torch chain, so bit-identical;
    # float32: the compiler may fuse x * cos + swapped * sin into one multiply-add.
    check = torch.equal if dtype == torch.bfloat16 else torch.allclose
    assert check(got[:, : heads + kv_heads], qk)
    assert torch.equal(got[:, heads + kv_heads :], ref[:, heads + kv_heads :])
    assert check(caches, expected_caches)


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_mul_matches_torch(ops: ModuleType, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(2)
    gate_up = (torch.randn(13, 2 * 1536, generator=g) * 4).to(dtype)
    gate_up[0, :4] = torch.tensor([-200.0, 200.0, 0.0, -30.0], dtype=dtype)  # tails
    gate, up = gate_up.split(1536, dim=-1)
    _close(ops.silu_mul(gate_up), F.silu(gate) * up, dtype)


def test_bad_inputs_are_refused_with_a_reason(ops: ModuleType) -> None:
    w = torch.ones(8)
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        ops.add_rms_norm(None, torch.ones(2, 8, dtype=torch.float16), w.half(), 1e-5)
    with pytest.raises(RuntimeError, match="weight"):
        ops.add_rms_norm(None, torch.ones(2, 8), torch.ones(7), 1e-5)
    qkv = torch.zeros(2, 5 * 4)
    cache = torch.zeros(1, 2, 2, 4)
    with pytest.raises(RuntimeError, match="out of range"):
        ops.rotary_cache_write(
            qkv, torch.ones(2, 4), torch.ones(2, 4), cache, cache.clone(),
            torch.tensor([0, 4]), 3, 1,
        )  # fmt: skip
    with pytest.raises(RuntimeError, match="gate_up"):
        ops.silu_mul(torch.zeros(2, 3))


def test_model_with_fused_ops_generates_what_the_torch_ops_do(
    make_engine: Callable[..., LLMEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """float32, greedy, prefill and decode: the same tokens with and without the fused ops
    (the decode-attention kernel stays on in both runs)."""
    from augury.models import layers, llama

    prompts = [
        [1, 504, 3458, 282, 4649, 314],
        [1, 1204, 253, 1789, 10180, 281, 3051, 28, 2234, 3117, 304],
    ]
    params = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)

    def run() -> list[list[int]]:
        engine = make_engine()
        for i, p in enumerate(prompts):
            engine.add_request(str(i), p, params)
        tokens: dict[str, list[int]] = {str(i): [] for i in range(len(prompts))}
        while engine.has_unfinished():
            for out in engine.step():
                for delta in out.outputs:
                    tokens[out.request_id] += delta.token_ids
        assert all(len(t) == params.max_tokens for t in tokens.values())
        return list(tokens.values())

    fused = run()
    monkeypatch.setattr(layers, "cpu_kernels", lambda t: None)
    monkeypatch.setattr(llama, "cpu_kernels", lambda t: None)
    monkeypatch.setattr(layers, "_decode_kernel", lambda q, k: kernel_ops())
    assert run() == fused
