"""The C++ paged decode kernel against the torch gather + matmul path."""

from __future__ import annotations

import shutil

import pytest
import torch

from augury.kernels.loader import kernel_ops
from augury.llm.batch import SeqWork, build_step_batch
from augury.models.layers import PagedAttention


def test_kernel_builds_where_a_compiler_exists() -> None:
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler on this machine")
    assert kernel_ops() is not None


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("heads", [(9, 3), (4, 4), (8, 1)])
def test_kernel_matches_torch_path(dtype: torch.dtype, atol: float, heads: tuple[int, int]) -> None:
    ops = kernel_ops()
    if ops is None:
        pytest.skip("kernel unavailable")
    n_heads, n_kv = heads
    g = torch.Generator().manual_seed(n_heads)
    att = PagedAttention(n_heads, n_kv, 64)
    nb, bs = 120, 16
    kc = torch.randn(n_kv, nb, bs, 64, generator=g).to(dtype)
    vc = torch.randn(n_kv, nb, bs, 64, generator=g).to(dtype)
    perm = torch.randperm(nb, generator=g).tolist()
    lens = [1, 16, 17, 90, 200, 33, 5]  # block edges, one token, long and short together
    works, used = [], 0
    for n in lens:
        need = -(-n // bs)
        works.append(SeqWork([1], n - 1, perm[used : used + need]))
        used += need
    batch = build_step_batch([], works, bs, torch.device("cpu"))
    q = torch.randn(len(lens), n_heads, 64, generator=g).to(dtype)
    expected = att._decode_torch(q, kc, vc, batch.meta)
    got = ops.paged_decode_attention(
        q, kc, vc, batch.meta.decode_block_tables, batch.meta.decode_context_lens, att.scale
    )
    torch.testing.assert_close(got.float(), expected.float(), atol=atol, rtol=0)
