"""Building blocks of a Llama-family decoder: RMSNorm, rotary embeddings, paged attention, SwiGLU.

Attention reads and writes keys/values through a paged cache: per layer, one key and one value
tensor of shape (num_kv_heads, num_blocks, block_size, head_dim) (heads outermost, so that a
gather of blocks is directly a batched-matmul operand). A token's cache slot is
``block_id * block_size + offset``; the engine hands the model a flat batch of tokens together
with an :class:`AttentionMetadata` that says where each token goes and what each sequence sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from augury.kernels.loader import kernel_ops


@dataclass
class PrefillSpan:
    """A run of consecutive prompt tokens of one sequence inside the flat batch."""

    start: int
    """Index of the span's first token in the flat batch."""
    end: int
    """One past its last token."""
    context_len: int
    """Tokens the sequence has in the cache once this span is written (earlier ones included)."""
    block_table: torch.Tensor
    """(ceil(context_len / block_size),) int64: the sequence's cache blocks, in order."""


@dataclass
class AttentionMetadata:
    """Where each token of a flat batch lives in the paged cache; shared by all layers of a step.

    Layout of the flat batch: the prefill spans first (any order), then one token per decoding
    sequence from ``decode_start`` to the end.
    """

    slot_mapping: torch.Tensor
    """(T,) int64: cache slot written by each token."""
    prefills: list[PrefillSpan]
    decode_start: int
    """Index of the first decode token; equals T when no sequence decodes."""
    decode_block_tables: torch.Tensor
    """(B, max_blocks) int64, padded with block 0 (masked out)."""
    decode_mask: torch.Tensor
    """(B, 1, 1, max_blocks * block_size) float: 0 where a key is visible, -inf past the end."""
    decode_context_lens: torch.Tensor
    """(B,) int64: tokens each decoding sequence has in the cache, this step's included."""

    @property
    def num_decodes(self) -> int:
        return int(self.decode_block_tables.shape[0])


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size), requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalize in float32 whatever the compute dtype, as the reference does.
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)

    def add_forward(
        self, x: torch.Tensor | None, residual: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(norm(residual + x), residual + x), or (norm(residual), residual) when x is None.

        One fused C++ pass on the CPU (`residual` is then updated in place), else torch ops."""
        ops = cpu_kernels(residual)
        fusable = residual.is_contiguous() and self.weight.dtype == residual.dtype
        fusable &= x is None or (x.is_contiguous() and x.dtype == residual.dtype)
        if ops is not None and fusable:
            return ops.add_rms_norm(x, residual, self.weight, self.eps), residual
        if x is not None:
            residual = residual + x
        return self.forward(residual), residual


class Rotary(nn.Module):
    """Rotary position embeddings in the 'rotate half' layout; a cos/sin table per position."""

    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, head_dim: int, max_positions: int, theta: float) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.max_positions = max_positions
        self.theta = theta
        device = torch.empty(0).device
        if device.type == "meta":  # placeholders until the loader calls build: computing the
            # tables on meta would import sympy and ~800 modules (~80 MB of a serving process)
            for name in ("cos", "sin"):
                self.register_buffer(name, torch.empty(max_positions, head_dim), persistent=False)
        else:
            self.build(device)

    def build(self, device: torch.device) -> None:
        """(Re)compute the float32 tables on `device` (after a dtype cast or meta init)."""
        with torch.device(device):
            exponent = torch.arange(0, self.head_dim, 2, dtype=torch.int64).float() / self.head_dim
            inv_freq = 1.0 / (self.theta**exponent)
            freqs = torch.arange(self.max_positions, dtype=torch.float32)[:, None] * inv_freq
            emb = torch.cat((freqs, freqs), dim=-1)  # (max_positions, head_dim)
            self.register_buffer("cos", emb.cos(), persistent=False)
            # rotate_half(x) * sin == swap_halves(x) * [-sin | sin]: the sign lives in the table.
            sin = emb.sin()
            half = self.head_dim // 2
            self.register_buffer(
                "sin", torch.cat((-sin[:, :half], sin[:, half:]), dim=-1), persistent=False
            )

    def tables(
        self, positions: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, signed sin) rows for `positions`, each (T, 1, head_dim): once per step."""
        return self.cos[positions].unsqueeze(1).to(dtype), self.sin[positions].unsqueeze(1).to(
            dtype
        )

    @staticmethod
    def rotate(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x (T, heads, head_dim) rotated: x * cos + rotate_half(x) * sin."""
        half = x.shape[-1] // 2
        swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
        return x * rope[0] + swapped * rope[1]


class PagedAttention(nn.Module):
    """Grouped-query attention whose keys and values live in a paged cache."""

    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
        cached: bool = False,
    ) -> torch.Tensor:
        """Attention of each token of the flat batch; `cached` when k and v are already in the
        cache (written by the fused rotary kernel)."""
        # q: (T, n_heads, hd); k, v: (T, n_kv, hd); caches: (n_kv, num_blocks, block_size, hd)
        n_kv, hd = self.num_kv_heads, self.head_dim
        if not cached:
            k_cache.view(n_kv, -1, hd).index_copy_(
                1, meta.slot_mapping, k.transpose(0, 1).to(k_cache.dtype)
            )
            v_cache.view(n_kv, -1, hd).index_copy_(
                1, meta.slot_mapping, v.transpose(0, 1).to(v_cache.dtype)
            )

        out = torch.empty_like(q)
        for span in meta.prefills:
            out[span.start : span.end] = self._prefill(q, k, v, k_cache, v_cache, span)
        if meta.num_decodes:
            out[meta.decode_start :] = self._decode(q[meta.decode_start :], k_cache, v_cache, meta)
        return out.view(q.shape[0], self.num_heads * hd)

    def _prefill(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        span: PrefillSpan,
    ) -> torch.Tensor:
        n = span.end - span.start
        qs = q[span.start : span.end].transpose(0, 1)  # (n_heads, n, hd)
        if span.context_len == n:
            # The whole context is in this span: attend to the fresh keys, causally.
            ks = k[span.start : span.end].transpose(0, 1).to(qs.dtype)  # (n_kv, n, hd)
            vs = v[span.start : span.end].transpose(0, 1).to(qs.dtype)
            return self._sdpa(qs, self._expand(ks), self._expand(vs), None)  # (n, n_heads, hd)
        # Earlier tokens are cached (chunked prefill or a prefix hit): read the context back.
        ctx = span.context_len
        ks = self._gather(k_cache, span.block_table)[:, :ctx].to(qs.dtype)  # (n_kv, ctx, hd)
        vs = self._gather(v_cache, span.block_table)[:, :ctx].to(qs.dtype)
        # Query i sits at position ctx - n + i and sees keys 0 .. ctx - n + i.
        q_pos = torch.arange(ctx - n, ctx, device=q.device).unsqueeze(1)
        mask = torch.arange(ctx, device=q.device).unsqueeze(0) <= q_pos  # (n, ctx)
        return self._sdpa(qs, self._expand(ks), self._expand(vs), mask)

    def _sdpa(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """(n_heads, n, hd) each -> (n, n_heads, hd); causal when no mask is given.

        Batched 4-D inputs select SDPA's fused CPU kernel (3-D ones take the unfused math path:
        4.5 vs 12.5 ms per layer for 500 bf16 tokens, measured)."""
        out = F.scaled_dot_product_attention(
            q[None], k[None], v[None], attn_mask=mask, is_causal=mask is None, scale=self.scale
        )
        return out[0].transpose(0, 1)

    def _expand(self, x: torch.Tensor) -> torch.Tensor:
        """(n_kv, n, hd) -> (n_heads, n, hd): each kv head serves its group of query heads."""
        return x.repeat_interleave(self.num_heads // self.num_kv_heads, dim=0)

    def _gather(self, cache: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """(n_kv, num_blocks, block_size, hd) -> (n_kv, len(table) * block_size, hd), one copy."""
        return cache.index_select(1, table).view(self.num_kv_heads, -1, self.head_dim)

    def _decode(
        self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        ops = _decode_kernel(q, k_cache)
        if ops is not None:
            return ops.paged_decode_attention(
                q.to(k_cache.dtype),
                k_cache,
                v_cache,
                meta.decode_block_tables,
                meta.decode_context_lens,
                self.scale,
            ).to(q.dtype)
        return self._decode_torch(q, k_cache, v_cache, meta)

    def _decode_torch(
        self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        # One query per sequence. A plain batched matmul + softmax beats SDPA's CPU kernel here,
        # and the (n_kv, B, ...) layout lets the gathered cache feed the matmul without a copy.
        b = q.shape[0]
        n_kv, hd = self.num_kv_heads, self.head_dim
        group = self.num_heads // n_kv
        tables = meta.decode_block_tables  # (B, max_blocks)
        ks = self._gather(k_cache, tables.flatten()).view(n_kv, b, -1, hd)  # (n_kv, B, ctx, hd)
        vs = self._gather(v_cache, tables.flatten()).view(n_kv, b, -1, hd)
        qg = q.view(b, n_kv, group, hd).transpose(0, 1).to(ks.dtype)  # (n_kv, B, group, hd)
        scores = torch.matmul(qg, ks.transpose(-1, -2)).float() * self.scale  # (n_kv, B, g, ctx)
        scores += meta.decode_mask.view(1, b, 1, -1)
        probs = torch.softmax(scores, dim=-1).to(vs.dtype)
        out = torch.matmul(probs, vs)  # (n_kv, B, group, hd)
        return out.transpose(0, 1).reshape(b, self.num_heads, hd).to(q.dtype)


def _decode_kernel(q: torch.Tensor, k_cache: torch.Tensor) -> ModuleType | None:
    """The C++ paged decode kernel where it applies (CPU, float32/bfloat16), else None.

    Measured on a quiet 2-core machine, 2 threads, per layer call, bfloat16: batch 4 x 300
    tokens 91 vs 191 us (gather + matmul), batch 16 x 192 222 vs 298 us, batch 64 x 200
    1075 vs 1949 us; float32 wins by more. `make install` builds it ahead of time.
    """
    return cpu_kernels(k_cache) if q.device.type == "cpu" else None


def cpu_kernels(t: torch.Tensor) -> ModuleType | None:
    """Augury's C++ kernels when they apply to `t` (a CPU float32/bfloat16 tensor), else None."""
    if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.bfloat16):
        return None
    return kernel_ops()


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) with gate and up fused into one matmul."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.intermediate = intermediate
        self.gate_up_proj = nn.Linear(hidden, 2 * intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = self.gate_up_proj(x)  # (T, 2 * intermediate): [gate | up]
        ops = cpu_kernels(gate_up)
        if ops is not None and gate_up.is_contiguous():
            return self.down_proj(ops.silu_mul(gate_up))
        gate, up = gate_up.split(self.intermediate, dim=-1)
        return self.down_proj(F.silu(gate) * up)
