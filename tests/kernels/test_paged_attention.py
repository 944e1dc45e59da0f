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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("start", [1, 14, 16, 40, 95])
def test_rows_of_one_sequence_match_each_row_alone(dtype: torch.dtype, start: int) -> None:
    """A decoding token and the drafts verified after it (consecutive rows of one sequence,
    each context one longer) are computed together; every row must equal, bit for bit, that row
    computed alone, across block edges, so verified drafts decode exactly as plain steps do."""
    ops = kernel_ops()
    if ops is None:
        pytest.skip("kernel unavailable")
    g = torch.Generator().manual_seed(start)
    n_heads, n_kv, nb, bs, rows = 9, 3, 40, 16, 9
    kc = torch.randn(n_kv, nb, bs, 64, generator=g).to(dtype)
    vc = torch.randn(n_kv, nb, bs, 64, generator=g).to(dtype)
    table = torch.randperm(nb, generator=g)[:8].tolist()
    other = torch.randperm(nb, generator=g)[:8].tolist()
    # An unrelated sequence before and after the group: groups must not swallow them.
    works = [SeqWork([1], 30, other)]
    works += [SeqWork([1], start + j - 1, table) for j in range(rows)]
    works += [SeqWork([1], 50, other)]
    batch = build_step_batch([], works, bs, torch.device("cpu"))
    q = torch.randn(len(works), n_heads, 64, generator=g).to(dtype)
    tables, lens = batch.meta.decode_block_tables, batch.meta.decode_context_lens
    together = ops.paged_decode_attention(q, kc, vc, tables, lens, 0.125)
    for i in range(len(works)):
        alone = ops.paged_decode_attention(
            q[i : i + 1], kc, vc, tables[i : i + 1], lens[i : i + 1], 0.125
        )
        assert torch.equal(together[i], alone[0]), f"row {i} differs"
    att = PagedAttention(n_heads, n_kv, 64)
    att.scale = 0.125
    expected = att._decode_torch(q, kc, vc, batch.meta)
    atol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(together.float(), expected.float(), atol=atol, rtol=0)
