"""Weight-only quantized linear layers for the CPU: INT4 group-wise and INT8 per-channel.

Quantization is a module swap (`quantize_linears`) applied to the decoder's linear layers while
their weights are still float32, before the model is cast to its compute dtype: the scales
then follow the cast, and the 4-bit codes of a GGUF Q4_1 checkpoint come back exactly (Q4_1
stores w = d * q + m per group of 32 with m the group's minimum and d = (max - min) / 15, which
is what a min/max requantization of the dequantized group recomputes).

INT4 runs on Augury's own kernel (`augury/kernels/q4.h`: Q4_1's layout, activations
quantized to int8 per group of 32, AVX-512 VNNI dot products) when the C++ kernels are built,
else on PyTorch's `_weight_int4pack_mm_for_cpu` (groups of 32, w = (code - 8) * scale + zero);
INT8 on `_weight_int8pack_mm` (w = code * scale per output row). They stream 4x / 2x fewer
bytes than bfloat16 weights, which is what a decode step at a few rows is bound by, but lose to
oneDNN's bfloat16 GEMM as rows grow (measured in bench/bench_quant.py). So a layer can keep its
dense weight too and use it above `dense_above` rows (the engine's default: int4 for decode
steps of up to 20 rows, bfloat16 GEMMs for prefill and large batches); without it the layer is
quantized for every batch (smallest memory).
The embedding and the LM head (tied here) become one Q8_0 table on Augury's q8 kernel
(`Q8Table`, augury/kernels/q8.h) when the kernels are built: the bundled GGUF stores them in
Q8_0, so its codes come back exactly, at 30 MB instead of 57 (bfloat16) plus 54 (the LM head's
packed copy); without the kernels they stay dense.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
from torch import nn

from augury.kernels.loader import kernel_ops

Quantization = Literal["none", "int8", "int4"]
QUANTIZATIONS: tuple[str, ...] = get_args(Quantization)
INT4_GROUP = 32
"""Weights per INT4 scale/zero pair (Q4_1's block size)."""
Q8_HEAD_MAX_ROWS = 8
"""Up to this many rows the Q8_0 LM head beats oneDNN's packed bfloat16 one (measured:
bench/bench_quant.py); above it a head that kept its float weight uses that."""


def quantize_int4(
    weight: torch.Tensor, group: int = INT4_GROUP
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) float -> (codes (N, K) int32 in 0..15, scales_and_zeros (K / group, N, 2) float32)
    with weight ~= (code - 8) * scale + zero, scale and zero per row and group of `group`."""
    n, k = weight.shape
    if k % group:
        raise ValueError(f"in_features {k} is not a multiple of the INT4 group size {group}")
    groups = weight.float().view(n, k // group, group)
    lo, hi = groups.amin(-1), groups.amax(-1)  # (N, K / group)
    scale = (hi - lo) / 15
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant group: code 0
    codes = ((groups - lo[..., None]) / safe[..., None]).round().clamp(0, 15).to(torch.int32)
    zero = lo + 8 * scale
    scales_and_zeros = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous()
    return codes.view(n, k), scales_and_zeros


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) float -> (codes (N, K) int8, scales (N,) float32), symmetric per output row."""
    w = weight.float()
    scale = w.abs().amax(dim=1) / 127
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = (w / safe[:, None]).round().clamp(-127, 127).to(torch.int8)
    return codes, scale


class QuantLinear(nn.Module):
    """y = x @ W^T with W stored as INT4 or INT8 codes plus float scales (bias-free).

    With `dense` (an nn.Linear holding the float weight, packed for oneDNN later like any
    other linear) it serves inputs of more than `dense_above` rows."""

    def __init__(
        self,
        codes: torch.Tensor,
        scales: torch.Tensor,
        mode: Quantization,
        dense: nn.Linear | None = None,
        dense_above: int | None = None,
    ) -> None:
        """codes: int4: (N, K) int32 in 0..15, with scales_and_zeros (K / 32, N, 2) or
        float16 d and m (2, N, K / 32) (see q4_1_scales); int8: (N, K) int8, with scales (N,)."""
        super().__init__()
        if mode not in ("int8", "int4"):
            raise ValueError(f"QuantLinear mode must be 'int8' or 'int4', got {mode!r}")
        self.mode = mode
        self.out_features, self.in_features = codes.shape
        self.dense_above = dense_above
        ops = kernel_ops()
        # "q4": Augury's INT4 kernel; "torch": PyTorch's weight-only ops.
        self.kernel = "q4" if mode == "int4" and ops is not None else "torch"
        if self.kernel == "q4":
            codes, scales = to_q4_layout(codes, scales)
        elif mode == "int4":
            # innerKTiles=1: the CPU kernel's packing ignores the tiling argument.
            codes = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
            if is_q4_1_scales(scales):  # float16 d and m -> scales_and_zeros
                d, m = scales.float()
                scales = torch.stack([d, m + 8 * d], dim=-1).transpose(0, 1).contiguous()
        self.codes: torch.Tensor
        # torch kernels: floating, follows the model's dtype cast; q4: int16 float16 bits
        self.scales: torch.Tensor
        self.register_buffer("codes", codes)
        self.register_buffer("scales", scales)
        self.dense = dense

    @classmethod
    def from_weight(
        cls, weight: torch.Tensor, mode: Quantization, dense_above: int | None = None
    ) -> QuantLinear:
        """Quantize an (N, K) float weight; keep it as `dense` too when dense_above is set."""
        if mode == "int4":
            codes, scales = quantize_int4(weight)
        elif mode == "int8":
            codes, scales = quantize_int8(weight)
        else:
            raise ValueError(f"QuantLinear mode must be 'int8' or 'int4', got {mode!r}")
        dense = None
        if dense_above is not None:
            dense = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
            dense.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        return cls(codes, scales, mode, dense, dense_above)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            self.dense is not None
            and self.dense_above is not None
            and x.shape[0] > self.dense_above
        ):
            return self.dense(x)
        if self.kernel == "q4":
            ops = kernel_ops()
            assert ops is not None
            return ops.q4_linear(x, self.codes, self.scales)
        scales = self.scales if self.scales.dtype == x.dtype else self.scales.to(x.dtype)
        if self.mode == "int4":
            return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.codes, INT4_GROUP, scales)
        return torch.ops.aten._weight_int8pack_mm(x, self.codes, scales)

    def dequantized(self) -> torch.Tensor:
        """The (N, K) float32 weight the codes stand for (tests, accuracy reports)."""
        if self.kernel == "q4":
            return from_q4_layout(self.codes, self.scales)
        eye = torch.eye(self.in_features, dtype=self.scales.dtype)
        keep, self.dense = self.dense, None
        try:
            return self.forward(eye).float().t().contiguous()
        finally:
            self.dense = keep


def quantize_linears(
    model: nn.Module,
    mode: Quantization,
    dense_above: int | None = None,
    skip: tuple[str, ...] = ("lm_head",),
) -> int:
    """Swap every bias-free nn.Linear of `model` (but those named in `skip`) for a QuantLinear;
    returns how many. Call it while the weights are float32, before casting the model."""
    if mode not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}; got {mode!r}")
    if mode == "none":
        return 0
    swapped = 0
    for parent in list(model.modules()):
        if isinstance(parent, QuantLinear):
            continue
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear) or child.bias is not None or name in skip:
                continue
            if child.weight.device.type != "cpu":
                raise ValueError("weight-only quantization runs on the CPU only")
            setattr(parent, name, QuantLinear.from_weight(child.weight, mode, dense_above))
            swapped += 1
    return swapped


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """(N, K) int codes in 0..15 -> (N, K / 2) uint8, even columns in the low nibble (files)."""
    c = codes.to(torch.uint8)
    return c[:, 0::2] | (c[:, 1::2] << 4)


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of pack_nibbles: (N, K / 2) uint8 -> (N, K) int32."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack([low, high], dim=-1).view(packed.shape[0], -1).to(torch.int32)


def q4_1_scales(scales_and_zeros: torch.Tensor) -> torch.Tensor:
    """scales_and_zeros (K / 32, N, 2) (w = (code - 8) * scale + zero) -> Q4_1's d and m
    (2, N, K / 32) float16 (w = d * code + m); float16 d and m pass through unchanged."""
    if is_q4_1_scales(scales_and_zeros):
        return scales_and_zeros
    scale = scales_and_zeros[..., 0].t().float()
    zero = scales_and_zeros[..., 1].t().float()
    return torch.stack([scale, zero - 8 * scale]).to(torch.float16).contiguous()


def is_q4_1_scales(scales: torch.Tensor) -> bool:
    return scales.dtype == torch.float16 and scales.dim() == 3 and scales.shape[0] == 2


def to_q4_layout(codes: torch.Tensor, scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) codes 0..15 and their scales (either form of q4_1_scales) -> the q4 kernel's
    (nibbles (N, K / 2) uint8, d and m (2, N, K / 32) int16 holding float16 bits),
    w = d * code + m: per group of 32, byte j holds column j (low nibble) and j + 16 (high)."""
    n, k = codes.shape
    groups = codes.to(torch.uint8).view(n, k // INT4_GROUP, 2, INT4_GROUP // 2)
    nibbles = (groups[:, :, 0] | (groups[:, :, 1] << 4)).reshape(n, k // 2)
    return nibbles.contiguous(), q4_1_scales(scales).view(torch.int16).contiguous()


def from_q4_layout(nibbles: torch.Tensor, dm: torch.Tensor) -> torch.Tensor:
    """The inverse of to_q4_layout, as the (N, K) float32 weight the codes stand for."""
    n, half = nibbles.shape
    g = half * 2 // INT4_GROUP
    pairs = nibbles.view(n, g, 1, INT4_GROUP // 2)
    codes = torch.cat([pairs & 0x0F, pairs >> 4], dim=2).view(n, g, INT4_GROUP).float()
    d, m = dm.view(torch.float16).float()
    return (codes * d[..., None] + m[..., None]).view(n, g * INT4_GROUP)


def quantize_q8_0(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) float -> GGUF Q8_0: (codes (N, K) int8 in -127..127, d (N, K / 32) float16),
    w ~= d * code per row and group of 32 with d = max |w| / 127. A Q8_0 tensor dequantized to
    float32 comes back code for code."""
    n, k = weight.shape
    if k % INT4_GROUP:
        raise ValueError(f"in_features {k} is not a multiple of the Q8_0 group size 32")
    groups = weight.float().view(n, k // INT4_GROUP, INT4_GROUP)
    d = (groups.abs().amax(-1) / 127).to(torch.float16)
    safe = torch.where(d > 0, d, torch.ones_like(d)).float()
    codes = (groups / safe[..., None]).round().clamp(-127, 127).to(torch.int8)
    return codes.view(n, k), d


def dequantize_q8_0(codes: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Q8_0's (codes (N, K) int8, d (N, K / 32) float16) -> the (N, K) float32 weight."""
    n, k = codes.shape
    return (codes.float().view(n, -1, INT4_GROUP) * d.float()[..., None]).view(n, k)


def to_q8_layout(codes: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q8_0 (codes (N, K) int8, d (N, K / 32) float16) -> the q8 kernel's (codes + 128 (N, K)
    uint8 with each chunk of 4 groups' columns 0-15 before their columns 16-31 (see
    augury/kernels/q8.h), d as int16 float16 bits)."""
    n, k = codes.shape
    g = k // INT4_GROUP
    u = (codes.to(torch.int16) + 128).to(torch.uint8).view(n, g, 2, INT4_GROUP // 2)
    full = g // 4 * 4
    parts = [u[:, :full].reshape(n, g // 4, 4, 2, 16).transpose(2, 3).reshape(n, full * 32)]
    if full < g:  # a last chunk of fewer than 4 groups
        parts.append(u[:, full:].transpose(1, 2).reshape(n, (g - full) * 32))
    return torch.cat(parts, dim=1).contiguous(), d.to(torch.float16).view(torch.int16).contiguous()


def from_q8_layout(codes: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of to_q8_layout: Q8_0's (codes (N, K) int8, d (N, K / 32) float16)."""
    n, k = codes.shape
    g = k // INT4_GROUP
    full = g // 4 * 4
    parts = [codes[:, : full * 32].reshape(n, g // 4, 2, 4, 16).transpose(2, 3)]
    if full < g:
        parts.append(codes[:, full * 32 :].reshape(n, 1, 2, g - full, 16).transpose(2, 3))
    natural = torch.cat([p.reshape(n, -1, 2, 16) for p in parts], dim=1).reshape(n, k)
    return (natural.to(torch.int16) - 128).to(torch.int8), d.view(torch.float16)


class Q8Table(nn.Module):
    """An (N, K) matrix in Q8_0 on the q8 kernel (augury/kernels/q8.h): the embedding's rows
    (`rows`) and, as a module, the LM head (x @ W^T in float32). One table serves both when
    they are tied: 30 MB for the bundled model where the dense embedding plus the LM head's
    packed copy took 111 MB, and the head reads half the bytes of bfloat16 per decode step."""

    def __init__(
        self,
        codes: torch.Tensor,
        d: torch.Tensor,
        dense: nn.Linear | None = None,
        dense_above: int = Q8_HEAD_MAX_ROWS,
    ) -> None:
        """codes (N, K) int8 and d (N, K / 32) float16: Q8_0 (see quantize_q8_0). With `dense`
        (the float weight as an nn.Linear, packed for oneDNN later like any other linear),
        products of more than `dense_above` rows use it: the kernel is bound by arithmetic
        there and oneDNN's bfloat16 GEMM wins (bench/bench_quant.py measures both)."""
        super().__init__()
        self.num_embeddings, self.embedding_dim = codes.shape
        packed, scales = to_q8_layout(codes, d)
        self.codes: torch.Tensor
        self.scales: torch.Tensor
        self.register_buffer("codes", packed)
        self.register_buffer("scales", scales)
        self.dense = dense
        self.dense_above = dense_above

    @classmethod
    def from_weight(cls, weight: torch.Tensor, keep_dense: bool = False) -> Q8Table:
        dense = None
        if keep_dense:
            dense = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
            dense.weight = nn.Parameter(weight.detach(), requires_grad=False)
        return cls(*quantize_q8_0(weight), dense=dense)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(M, K) -> (M, N) float32."""
        if self.dense is not None and x.shape[0] > self.dense_above:
            return self.dense(x).float()
        return _q8_ops().q8_linear(x, self.codes, self.scales)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids -> their rows, bfloat16."""
        return _q8_ops().q8_embed(ids, self.codes, self.scales)

    def q8_0(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Q8_0's (codes, d) (exports)."""
        return from_q8_layout(self.codes, self.scales)

    def dequantized(self) -> torch.Tensor:
        return dequantize_q8_0(*self.q8_0())


class Q8Embedding(nn.Module):
    """nn.Embedding's place in a model, reading rows of a Q8Table."""

    def __init__(self, table: Q8Table) -> None:
        super().__init__()
        self.table = table

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table.rows(ids)


def _q8_ops() -> Any:
    ops = kernel_ops()
    if ops is None:
        raise RuntimeError("the Q8_0 table needs Augury's C++ kernels (AUGURY_KERNELS is 0?)")
    return ops
