"""A Llama-family decoder (Llama, SmolLM, Mistral-style GQA) composed from augury.models.layers.

The forward pass takes a flat batch of tokens from any number of sequences, with their positions,
and reads/writes keys and values through the paged cache described by AttentionMetadata.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from augury.kernels.loader import kernel_ops
from augury.models.config import LlamaConfig
from augury.models.layers import (
    AttentionMetadata,
    PagedAttention,
    RMSNorm,
    Rotary,
    SwiGLU,
    cpu_kernels,
)
from augury.models.packed import pack_linears
from augury.models.quant import (
    Q8Embedding,
    Q8Table,
    Quantization,
    QuantLinear,
    quantize_linears,
)

KVCaches = Sequence[tuple[torch.Tensor, torch.Tensor]]
"""One (key, value) pair per layer, each (num_kv_heads, num_blocks, block_size, head_dim)."""


class LlamaAttention(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Q, K and V in one matmul: rows [q | k | v].
        self.qkv_proj = nn.Linear(cfg.hidden_size, cfg.q_size + 2 * cfg.kv_size, bias=False)
        self.o_proj = nn.Linear(cfg.q_size, cfg.hidden_size, bias=False)
        self.attn = PagedAttention(cfg.num_heads, cfg.num_kv_heads, cfg.head_dim)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        kv: tuple[torch.Tensor, torch.Tensor],
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        t = x.shape[0]
        c = self.cfg
        qkv = self.qkv_proj(x)  # (T, (n_heads + 2 * n_kv) * hd)
        ops = cpu_kernels(qkv)
        if ops is not None and qkv.is_contiguous() and kv[0].dtype == qkv.dtype:
            # One pass: rotate q and k in place, write k and v to their cache slots.
            cos, sin = rope
            ops.rotary_cache_write(
                qkv, cos, sin, kv[0], kv[1], meta.slot_mapping, c.num_heads, c.num_kv_heads
            )
            heads = qkv.view(t, c.num_heads + 2 * c.num_kv_heads, c.head_dim)
            q, k = heads[:, : c.num_heads], heads[:, c.num_heads : c.num_heads + c.num_kv_heads]
            v = heads[:, c.num_heads + c.num_kv_heads :]
            return self.o_proj(self.attn(q, k, v, kv[0], kv[1], meta, cached=True))
        heads = qkv.view(t, c.num_heads + 2 * c.num_kv_heads, c.head_dim)
        # Rotate q and k together (one set of ops), then split: (T, n_heads | n_kv | n_kv, hd)
        qk = Rotary.rotate(heads[:, : c.num_heads + c.num_kv_heads], rope)
        q, k = qk[:, : c.num_heads], qk[:, c.num_heads :]
        v = heads[:, c.num_heads + c.num_kv_heads :]
        return self.o_proj(self.attn(q, k, v, kv[0], kv[1], meta))


class LlamaBlock(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = LlamaAttention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size)

    def forward(
        self,
        hidden: torch.Tensor | None,
        residual: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        kv: tuple[torch.Tensor, torch.Tensor],
        meta: AttentionMetadata,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The block in residual-stream form: x = residual + hidden (the previous block's MLP
        output; None for the first block), x += attn(norm(x)), then returns (mlp(norm(x)), x).
        Each residual add is fused with the norm that follows it."""
        h, residual = self.input_layernorm.add_forward(hidden, residual)
        attn = self.self_attn(h, rope, kv, meta)
        h, residual = self.post_attention_layernorm.add_forward(attn, residual)
        return self.mlp(h), residual


class LlamaModel(nn.Module):
    """Embedding, decoder blocks, final norm and LM head (tied to the embedding or separate)."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.rotary = Rotary(cfg.head_dim, cfg.max_position_embeddings, cfg.rope_theta)
        # No random init (the loaders set every weight): on the meta device Embedding's
        # normal_ init alone imports sympy and ~800 modules, ~80 MB of a serving process.
        self.embed_tokens = nn.Embedding(
            cfg.vocab_size, cfg.hidden_size, _weight=torch.empty(cfg.vocab_size, cfg.hidden_size)
        )
        self.layers = nn.ModuleList(LlamaBlock(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.requires_grad_(False)
        self.use_decode_stack = True
        """Run decode steps in one C++ call when the layers are on the q4 INT4 kernel, up to
        the rows where they would switch to dense weights (False: layer by layer)."""
        self._stack_key: tuple[int, ...] | None = None
        self._stack: Any = None
        self._stack_rows = 0

    @property
    def dtype(self) -> torch.dtype:
        return self.norm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.norm.weight.device

    def quantize_embedding(self, keep_dense: bool) -> bool:
        """Swap the embedding and the LM head for Q8_0 tables on the q8 kernel (one table when
        they are tied); False (nothing changed) where the kernels are unavailable. With
        `keep_dense` the LM head keeps its float weight for products of many rows."""
        if kernel_ops() is None:
            return False
        table = Q8Table.from_weight(
            self.embed_tokens.weight, keep_dense=keep_dense and self.cfg.tie_word_embeddings
        )
        head = table
        if not self.cfg.tie_word_embeddings:
            head = Q8Table.from_weight(self.lm_head.weight, keep_dense=keep_dense)
        self.embed_tokens, self.lm_head = Q8Embedding(table), head  # type: ignore[assignment]
        return True

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_caches: KVCaches,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        """(T,) token ids and positions -> (T, hidden) final hidden states (normalized)."""
        residual = self.embed_tokens(input_ids)  # (T, hidden)
        rope = self.rotary.tables(positions, residual.dtype)  # shared by every layer of the step
        stack = self._decode_stack(kv_caches) if not meta.prefills else None
        if stack is not None and input_ids.shape[0] <= self._stack_rows:
            # Every layer in one C++ call (augury/kernels/q4.cpp).
            return stack.forward(
                residual,
                rope[0],
                rope[1],
                meta.slot_mapping,
                meta.decode_block_tables,
                meta.decode_context_lens,
            )
        hidden: torch.Tensor | None = None
        for layer, kv in zip(self.layers, kv_caches, strict=True):
            hidden, residual = layer(hidden, residual, rope, kv, meta)
        return self.norm.add_forward(hidden, residual)[0]

    def _decode_stack(self, kv_caches: KVCaches) -> Any:
        """The C++ decode stack over these caches, built on first use; None where it does not
        apply (kernels off or unbuilt, layers not on the q4 INT4 kernel, not bfloat16)."""
        key = (len(kv_caches), kv_caches[0][0].data_ptr(), kv_caches[-1][1].data_ptr())
        if self._stack_key != key:
            self._stack_key, self._stack = key, self._build_decode_stack(kv_caches)
        return self._stack

    def _build_decode_stack(self, kv_caches: KVCaches) -> Any:
        ops = kernel_ops()
        if not self.use_decode_stack or ops is None or self.dtype != torch.bfloat16:
            return None
        # Up to the rows where the layers would switch to their dense weights, if they have any.
        self._stack_rows = sys.maxsize
        tensors: list[torch.Tensor] = []
        for block, (k, v) in zip(self.blocks(), kv_caches, strict=True):
            attn, mlp = block.self_attn, block.mlp
            linears = [attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj]
            if not all(isinstance(x, QuantLinear) and x.kernel == "q4" for x in linears):
                return None
            if k.dtype != torch.bfloat16 or not (k.is_contiguous() and v.is_contiguous()):
                return None
            codes = [(x.codes, x.scales) for x in linears if isinstance(x, QuantLinear)]
            for x in linears:
                if isinstance(x, QuantLinear) and x.dense is not None and x.dense_above:
                    self._stack_rows = min(self._stack_rows, x.dense_above)
            tensors += [block.input_layernorm.weight, *codes[0], *codes[1]]
            tensors += [block.post_attention_layernorm.weight, *codes[2], *codes[3], k, v]
        c = self.cfg
        return ops.DecodeStack(
            tensors, self.norm.weight, c.num_heads, c.num_kv_heads, c.rms_norm_eps
        )

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, hidden) -> (N, vocab) logits in float32 (sampling and argmax want full precision)."""
        return self.lm_head(hidden).float()

    def blocks(self) -> list[LlamaBlock]:
        return [layer for layer in self.layers if isinstance(layer, LlamaBlock)]

    def load_weights(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Copy Hugging Face-named weights in, fusing q/k/v and gate/up into single matrices."""
        expected = self.cfg.expected_shapes()
        for name, shape in expected.items():
            if name not in tensors:
                raise ValueError(f"weight '{name}' is missing")
            if tuple(tensors[name].shape) != shape:
                raise ValueError(
                    f"weight '{name}' has shape {tuple(tensors[name].shape)}, expected {shape}"
                )
        with torch.no_grad():
            self.embed_tokens.weight.copy_(tensors["model.embed_tokens.weight"])
            self.norm.weight.copy_(tensors["model.norm.weight"])
            if not self.cfg.tie_word_embeddings:
                self.lm_head.weight.copy_(tensors["lm_head.weight"])
            for n, layer in enumerate(self.blocks()):
                p = f"model.layers.{n}."
                attn, mlp = layer.self_attn, layer.mlp
                layer.input_layernorm.weight.copy_(tensors[p + "input_layernorm.weight"])
                layer.post_attention_layernorm.weight.copy_(
                    tensors[p + "post_attention_layernorm.weight"]
                )
                attn.qkv_proj.weight.copy_(
                    torch.cat([tensors[p + f"self_attn.{x}_proj.weight"] for x in "qkv"])
                )
                attn.o_proj.weight.copy_(tensors[p + "self_attn.o_proj.weight"])
                mlp.gate_up_proj.weight.copy_(
                    torch.cat(
                        [tensors[p + "mlp.gate_proj.weight"], tensors[p + "mlp.up_proj.weight"]]
                    )
                )
                mlp.down_proj.weight.copy_(tensors[p + "mlp.down_proj.weight"])


def build_model(
    cfg: LlamaConfig,
    tensors: Mapping[str, torch.Tensor],
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    prepack: bool = True,
    quantization: Quantization = "none",
    dense_above: int | None = None,
) -> LlamaModel:
    """A ready-to-run model: weights loaded, cast to `dtype`, moved to `device`, in eval mode.

    With `prepack`, bfloat16 linears on the CPU get oneDNN pre-packed weights (see packed.py).
    `quantization` int8/int4 swaps the decoder's linears for weight-only quantized ones
    (CPU only; see quant.py), keeping dense weights for inputs of more than `dense_above` rows,
    and the embedding and LM head for a Q8_0 table.
    """
    with torch.device("meta"):
        model = LlamaModel(cfg)
    model = model.to_empty(device="cpu")
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    model.load_weights(tensors)
    if quantization != "none":
        if torch.device(device).type != "cpu" or dtype != torch.bfloat16:
            raise ValueError(
                f"quantization {quantization!r} needs dtype bfloat16 on the CPU (got "
                f"{dtype} on {device}): PyTorch's weight-only CPU kernels are 30-100x slower "
                "with float32 activations"
            )
        quantize_linears(model, quantization, dense_above)  # from the float32 weights
        model.quantize_embedding(keep_dense=dense_above is not None)
    model = model.to(device=device, dtype=dtype).eval()
    # to_empty left the rotary tables uninitialized; build them in float32 on the device.
    model.rotary.build(torch.device(device))
    if prepack and dtype == torch.bfloat16 and torch.device(device).type == "cpu":
        pack_linears(model)
    return model
