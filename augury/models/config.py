"""The architecture contract between model loaders and the model.

Loaders (GGUF, Hugging Face) produce a :class:`LlamaConfig` and a state dict in Hugging Face
naming (``model.layers.0.self_attn.q_proj.weight`` ...), with the Q/K rows in Hugging Face order.
The model consumes exactly that and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class LlamaConfig:
    """Shape and numerics of a Llama-family decoder."""

    vocab_size: int
    """Rows of the token embedding and of the LM head."""
    hidden_size: int
    """Width of the residual stream."""
    intermediate_size: int
    """Width of the SwiGLU MLP's hidden layer."""
    num_layers: int
    """Number of decoder blocks."""
    num_heads: int
    """Query heads per layer."""
    num_kv_heads: int
    """Key/value heads per layer (grouped-query attention when smaller than num_heads)."""
    max_position_embeddings: int
    """Context length the model was trained for."""
    rms_norm_eps: float = 1e-5
    """Epsilon inside RMSNorm."""
    rope_theta: float = 10000.0
    """Base of the rotary embedding frequencies."""
    tie_word_embeddings: bool = False
    """True when the LM head reuses the token embedding matrix."""
    head_dim: int = 0
    """Per-head width; 0 means hidden_size // num_heads."""
    bos_token_id: int | None = None
    """Beginning-of-sequence token, when the model has one."""
    eos_token_ids: tuple[int, ...] = field(default_factory=tuple)
    """Tokens that end a generation."""
    architecture: str = "llama"
    """Architecture name as the source file states it."""

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.hidden_size // max(self.num_heads, 1))
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_kv_heads <= 0 or self.num_heads % self.num_kv_heads != 0:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a positive multiple of "
                f"num_kv_heads ({self.num_kv_heads})"
            )

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor the model needs, in Hugging Face naming and torch (out, in) order."""
        h, i = self.hidden_size, self.intermediate_size
        shapes: dict[str, tuple[int, ...]] = {
            "model.embed_tokens.weight": (self.vocab_size, h),
            "model.norm.weight": (h,),
        }
        if not self.tie_word_embeddings:
            shapes["lm_head.weight"] = (self.vocab_size, h)
        for n in range(self.num_layers):
            p = f"model.layers.{n}."
            shapes[p + "input_layernorm.weight"] = (h,)
            shapes[p + "post_attention_layernorm.weight"] = (h,)
            shapes[p + "self_attn.q_proj.weight"] = (self.q_size, h)
            shapes[p + "self_attn.k_proj.weight"] = (self.kv_size, h)
            shapes[p + "self_attn.v_proj.weight"] = (self.kv_size, h)
            shapes[p + "self_attn.o_proj.weight"] = (h, self.q_size)
            shapes[p + "mlp.gate_proj.weight"] = (i, h)
            shapes[p + "mlp.up_proj.weight"] = (i, h)
            shapes[p + "mlp.down_proj.weight"] = (h, i)
        return shapes


@dataclass
class LoadedModel:
    """What a loader returns: the architecture, the weights, and the file's own metadata."""

    config: LlamaConfig
    tensors: dict[str, torch.Tensor]
    """Float tensors (float32 unless stated) in Hugging Face naming, shapes as expected_shapes()."""
    quantization: str
    """Dominant storage type of the weights in the source file, e.g. 'Q4_1', 'F32', 'BF16'."""
    metadata: dict[str, object] = field(default_factory=dict)
    """Raw key/value metadata of the source (GGUF keys, or config.json entries)."""
