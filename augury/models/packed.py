"""CPU fast path: linear layers whose bfloat16 weights are pre-packed for oneDNN.

Measured on this project's 2-core AVX-512 BF16 machine (1 thread, bench in /tmp-free form in
bench/bench_kernels.py): packed weights make the decoder's matmuls 1.5-2x faster at 1-16 rows and
the 49k-wide LM head 5x faster at one row, but slower at 16 rows; so the LM head keeps both forms
and picks by the number of rows. A module swap (not a copy of the model), applied after loading.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Up to this many rows the packed LM head wins; above it the plain GEMM does (measured).
LM_HEAD_PACKED_MAX_ROWS = 4


def packing_available() -> bool:
    return bool(torch.backends.mkldnn.is_available()) and hasattr(
        torch.ops.mkldnn, "_linear_pointwise"
    )


class PackedLinear(nn.Module):
    """y = x @ W^T with W pre-packed by oneDNN (bfloat16, CPU)."""

    def __init__(self, weight: torch.Tensor, batch_hint: int = 1) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        w = weight.detach().to(torch.bfloat16).contiguous()
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(w, batch_hint))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")


class PackedLMHead(nn.Module):
    """The LM head with a packed copy for few rows and the plain weight for many."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight  # may be the (tied) embedding: no copy
        self.small = PackedLinear(weight, batch_hint=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] <= LM_HEAD_PACKED_MAX_ROWS:
            return self.small(x)
        return F.linear(x, self.weight)


def pack_linears(model: nn.Module, lm_head_name: str = "lm_head") -> int:
    """Swap every bias-free bfloat16 nn.Linear of `model` for a packed one; returns how many."""
    if not packing_available():
        return 0
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear) or child.bias is not None:
                continue
            if child.weight.dtype != torch.bfloat16 or child.weight.device.type != "cpu":
                continue
            new: nn.Module
            new = PackedLMHead(child.weight) if name == lm_head_name else PackedLinear(child.weight)
            setattr(parent, name, new)
            swapped += 1
    return swapped
