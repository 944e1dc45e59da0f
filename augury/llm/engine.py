"""The generation engine: requests in, token deltas out, one `step()` at a time.

    step() = schedule() -> execute() -> update()

The engine owns the model, the paged cache, the scheduler and the sampler. It is synchronous and
single-threaded; `AsyncEngine` drives it from a background thread and `LLM` drives it inline.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import sys
import time
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

from augury.llm.cuda_graphs import DecodeGraphs
from augury.llm.detokenizer import IncrementalDetokenizer
from augury.llm.kv_cache import (
    BlockManager,
    allocate_kv_caches,
    bytes_per_block,
    num_blocks_for_budget,
)
from augury.llm.outputs import (
    CompletionDelta,
    EngineStats,
    RequestOutput,
    StepTiming,
    TokenLogprob,
    Usage,
)
from augury.llm.runner import ModelRunner
from augury.llm.sampler import Sampler, SampleRow
from augury.llm.sampling_params import SamplingParams
from augury.llm.scheduler import Scheduler
from augury.llm.sequence import SeqStatus, Sequence
from augury.llm.speculative import (
    SPEC_DECAY,
    DraftPolicy,
    accept_greedy,
    accept_sampled,
    find_draft,
    record_verify,
)
from augury.models.config import LoadedModel
from augury.models.default import DEFAULT_MODEL_ID, default_model_path
from augury.models.llama import LlamaModel, build_model
from augury.models.quant import QUANTIZATIONS, Quantization
from augury.models.tokenizer import Tokenizer
from augury.threads import set_torch_threads

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class EngineConfig:
    """Everything that shapes an engine. Only the engine and the app factory see all of it."""

    model: str | None = None
    """A .gguf file or a Hugging Face checkpoint folder; None means the bundled SmolLM2."""
    model_id: str | None = None
    """Name clients use for the model; defaults to the file's stem."""
    dtype: str = "bfloat16"
    """Compute and cache dtype: float32 (exact), bfloat16 (~2x faster on AVX-512 BF16 CPUs)."""
    device: str = "cpu"
    """'cpu', or 'cuda' / 'cuda:N' when a GPU is present."""
    kv_cache_memory: int = 1 << 30
    """Bytes for keys and values of all sequences together."""
    block_size: int = 16
    """Tokens per cache block."""
    max_num_seqs: int = 128
    """Most sequences decoding together."""
    max_num_batched_tokens: int = 512
    """Token budget of one step (decodes + prompt chunks)."""
    max_model_len: int | None = None
    """Longest prompt + output; defaults to the model's context length."""
    speculative_tokens: int = 4
    """Prompt-lookup draft tokens verified per step (0 turns speculative decoding off)."""
    speculative_max_batch: int = 4
    """Speculate only while at most this many sequences run (larger batches are compute-bound)."""
    enable_prefix_caching: bool = True
    """Reuse the cached blocks of earlier requests that share a prompt prefix."""
    max_waiting: int = 1024
    """Most requests waiting for admission; more are refused (the server answers 429)."""
    quantization: str = "auto"
    """Weight-only quantization of the decoder's linear layers (CPU, bfloat16): none, int8,
    int4, or auto: int4 where it is lossless (a Q4_1 GGUF served in bfloat16 on the CPU) with
    dense weights for steps of more than `quantized_max_rows` (default 8) tokens, else none."""
    quantized_max_rows: int | None = None
    """With quantization: steps of more tokens than this use dense weights kept beside the
    quantized ones (quantized kernels win only for a few rows); None quantizes every step and
    keeps no dense copy (least memory)."""
    num_threads: int | None = None
    """torch intra-op threads of the thread that steps the engine; None: torch's default (one
    per core)."""
    seed: int = 0
    """Seed of the shared random source for requests without a seed of their own."""
    cuda_graphs: bool = True
    """On a CUDA device, replay CUDA graphs of decode-only steps (captured per batch and
    context bucket on first use); False runs every step eagerly. Ignored on the CPU."""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        for name in ("block_size", "max_num_seqs", "max_num_batched_tokens", "max_waiting"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.kv_cache_memory <= 0:
            raise ValueError(f"kv_cache_memory must be positive, got {self.kv_cache_memory}")
        if self.quantization not in ("auto", *QUANTIZATIONS):
            raise ValueError(
                f"quantization must be one of auto, {', '.join(QUANTIZATIONS)}, "
                f"got {self.quantization!r}"
            )
        if self.quantized_max_rows is not None and self.quantized_max_rows < 1:
            raise ValueError(
                f"quantized_max_rows must be at least 1 (or None), got {self.quantized_max_rows}"
            )


DEFAULT_THREADS = torch.get_num_threads()
"""torch's own default (one per physical core), read when this module is imported."""


class QueueFullError(RuntimeError):
    """The waiting queue is at max_waiting; try again later."""


def load_model_and_tokenizer(
    path: str | None,
    dtype: torch.dtype,
    device: str,
    quantization: str = "auto",
    dense_above: int | None = None,
) -> tuple[LlamaModel, Tokenizer]:
    """A built model and its tokenizer, from a GGUF file, a Hugging Face folder or an
    `augury export` folder (whose weights are quantized already)."""
    from augury.models.export import exported_quantization, load_exported
    from augury.models.loader import load_weights

    source = Path(path) if path else default_model_path()
    exported = exported_quantization(source)
    if exported is not None:
        if quantization not in ("auto", exported):
            raise ValueError(f"{source} holds {exported} weights; quantization {quantization!r}")
        log.info("weights: %s, exported %s", source, exported)
        model = load_exported(source, dtype, device)
        release_freed_memory()
        return model, Tokenizer.from_dir(source)
    loaded = load_weights(source)
    if quantization == "auto":
        quantization, dense_above = auto_quantization(loaded, dtype, device, dense_above)
    model = build_model(
        loaded.config,
        loaded.tensors,
        dtype=dtype,
        device=device,
        quantization=cast(Quantization, quantization),
        dense_above=dense_above,
    )
    log.info(
        "weights: %s (%s) as %s, quantization %s%s",
        source.name,
        loaded.quantization,
        dtype,
        quantization,
        f" (dense above {dense_above} rows)" if quantization != "none" and dense_above else "",
    )
    loaded.tensors.clear()  # the model holds its own copies; free the float32 originals
    release_freed_memory()
    if source.is_dir():
        return model, Tokenizer.from_dir(source)
    return model, Tokenizer.from_gguf_metadata(loaded.metadata)


def release_freed_memory() -> None:
    """Hand the pages that loading freed back to the OS (glibc's malloc_trim; nothing
    elsewhere). glibc keeps them otherwise: ~140 MB of the RSS after loading an INT4 export."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):  # another C library (musl)
        ctypes.CDLL("libc.so.6").malloc_trim(0)


AUTO_DENSE_ABOVE = 20
"""Rows above which `auto` quantization uses the dense bfloat16 weights. Verifying drafts of
speculative_max_batch (4) sequences x (1 + speculative_tokens (4)) rows stays on the INT4
kernel, so speculative greedy output is the plain decode's exactly (tests/kernels/test_q4.py);
the cost at 9-24 rows is 4-12% per step against bfloat16 GEMMs (measured 2026-11-23)."""


def auto_quantization(
    loaded: LoadedModel, dtype: torch.dtype, device: str, dense_above: int | None
) -> tuple[str, int | None]:
    """What `quantization="auto"` means for this checkpoint: INT4 (requantizing Q4_1 is
    lossless) for bfloat16 on the CPU, with dense weights for larger steps; else none."""
    if loaded.quantization == "Q4_1" and dtype == torch.bfloat16 and device == "cpu":
        return "int4", dense_above or AUTO_DENSE_ABOVE
    return "none", None


class LLMEngine:
    def __init__(self, model: LlamaModel, tokenizer: Tokenizer, config: EngineConfig) -> None:
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        cfg = model.cfg
        self.model_id = config.model_id or DEFAULT_MODEL_ID
        self.max_model_len = min(
            config.max_model_len or cfg.max_position_embeddings, cfg.max_position_embeddings
        )
        dtype = model.dtype
        num_blocks = num_blocks_for_budget(cfg, config.block_size, dtype, config.kv_cache_memory)
        self.blocks = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
        self.kv_caches = allocate_kv_caches(cfg, num_blocks, config.block_size, dtype, model.device)
        graphs = None
        if config.cuda_graphs and model.device.type == "cuda":
            graphs = DecodeGraphs(model, self.kv_caches, config.block_size, self.max_model_len)
        self.runner = ModelRunner(model, self.kv_caches, config.block_size, graphs)
        self.scheduler = Scheduler(self.blocks, config.max_num_seqs, config.max_num_batched_tokens)
        self.eos_token_ids = frozenset(tokenizer.eos_token_ids) | frozenset(cfg.eos_token_ids)
        self.sampler = Sampler(cfg.vocab_size, sorted(self.eos_token_ids))
        self._requests: dict[str, list[Sequence]] = {}
        self._seq_ids = itertools.count()
        self._prompt_tokens_total = 0
        self._generation_tokens_total = 0
        self._steps = 0
        self._timing = StepTiming()
        self._spec_proposed = 0
        self._spec_accepted = 0
        self.drafts = DraftPolicy(config.speculative_tokens)
        torch.manual_seed(config.seed)
        log.info(
            "kv cache: %d blocks x %d tokens = %d tokens (%.0f MiB)",
            num_blocks,
            config.block_size,
            self.cache_tokens,
            num_blocks * bytes_per_block(cfg, config.block_size, dtype) / 2**20,
        )

    @classmethod
    def from_config(cls, config: EngineConfig) -> LLMEngine:
        # Always set, in the thread that steps the engine (see augury/threads.py).
        set_torch_threads(config.num_threads or DEFAULT_THREADS)
        model, tokenizer = load_model_and_tokenizer(
            config.model,
            DTYPES[config.dtype],
            config.device,
            config.quantization,
            config.quantized_max_rows,
        )
        if config.model_id is None and config.model:
            config.model_id = Path(config.model).name.removesuffix(".gguf")
        return cls(model, tokenizer, config)

    @property
    def cache_tokens(self) -> int:
        """How many tokens the KV cache holds in all."""
        return self.blocks.num_blocks * self.blocks.block_size

    # -- requests ------------------------------------------------------------------------------

    def tokenize_prompt(self, prompt: str | Seq[int]) -> list[int]:
        if isinstance(prompt, str):
            ids = self.tokenizer.encode(prompt)
        else:
            ids = [int(t) for t in prompt]
            bad = [t for t in ids if not 0 <= t < self.model.cfg.vocab_size]
            if bad:
                raise ValueError(
                    f"prompt token id {bad[0]} is outside the vocabulary "
                    f"(0..{self.model.cfg.vocab_size - 1})"
                )
        if not ids:
            raise ValueError("prompt is empty: give at least one token")
        return ids

    def check_request(self, prompt_ids: Seq[int], params: SamplingParams) -> None:
        """Refuse what can never run: too long for the context or for the whole cache."""
        params.check_vocab(self.model.cfg.vocab_size)
        total = len(prompt_ids) + params.max_tokens
        if total > self.max_model_len:
            raise ValueError(
                f"prompt ({len(prompt_ids)} tokens) + max_tokens ({params.max_tokens}) = {total} "
                f"exceeds the context length of {self.max_model_len}; shorten the prompt or "
                "lower max_tokens"
            )
        if self.blocks.blocks_for_tokens(total) > self.blocks.num_blocks:
            raise ValueError(
                f"prompt + max_tokens = {total} tokens can never fit the KV cache "
                f"({self.cache_tokens} tokens); raise kv_cache_memory or lower max_tokens"
            )

    def add_request(
        self,
        request_id: str,
        prompt: str | Seq[int],
        params: SamplingParams,
        priority: int = 0,
        arrival: float | None = None,
    ) -> list[int]:
        """Queue a request; returns its prompt token ids. Raises ValueError for bad input and
        QueueFullError when max_waiting requests already wait."""
        if request_id in self._requests:
            raise ValueError(f"request id {request_id!r} is already in use")
        if self.scheduler.num_waiting >= self.config.max_waiting:
            raise QueueFullError(f"{self.scheduler.num_waiting} requests are waiting already")
        prompt_ids = self.tokenize_prompt(prompt)
        self.check_request(prompt_ids, params)
        seq = self._new_seq(
            request_id, 0, prompt_ids, params, priority, arrival or time.monotonic()
        )
        seq.pending_forks = params.n - 1
        self._requests[request_id] = [seq]
        self.scheduler.add(seq)
        self._prompt_tokens_total += len(prompt_ids)
        return prompt_ids

    def abort(self, request_id: str) -> bool:
        """Stop a request now and free its cache blocks. False if it is unknown or finished."""
        seqs = self._requests.pop(request_id, None)
        if seqs is None:
            return False
        for seq in seqs:
            if not seq.finished:
                seq.status = SeqStatus.FINISHED
                seq.finish_reason = "abort"
                self.scheduler.remove(seq)
        return True

    def has_unfinished(self) -> bool:
        return bool(self._requests)

    def _new_seq(
        self,
        request_id: str,
        index: int,
        prompt_ids: list[int],
        params: SamplingParams,
        priority: int,
        arrival: float,
    ) -> Sequence:
        generator = None
        if params.seed is not None:
            generator = torch.Generator().manual_seed((params.seed + index) % (1 << 63))
        detok = IncrementalDetokenizer(
            self.tokenizer,
            prompt_ids=prompt_ids,
            skip_special_tokens=params.skip_special_tokens,
            stop=params.stop,
        )
        return Sequence(
            seq_id=next(self._seq_ids),
            request_id=request_id,
            index=index,
            prompt_ids=prompt_ids,
            params=params,
            arrival=arrival,
            detok=detok,
            priority=priority,
            generator=generator,
        )

    # -- the step ------------------------------------------------------------------------------

    def step(self) -> list[RequestOutput]:
        t0 = time.perf_counter()
        self._propose_drafts()
        sched = self.scheduler.schedule()
        if sched.is_empty:
            return []
        t1 = time.perf_counter()
        ready, counts, logits = self.runner.execute(sched)
        t2 = time.perf_counter()
        for s in sched.prefills + sched.decodes:
            if not s.seq.draft:  # drafted sequences advance by what verification accepts
                s.seq.num_computed += s.num_tokens
                self._cache_full_blocks(s.seq)
        offsets = [sum(counts[:i]) for i in range(len(counts))]
        plain = [i for i, seq in enumerate(ready) if not seq.draft]
        rows, plain_logits = self._fork_samples(
            [ready[i] for i in plain],
            logits[torch.tensor([offsets[i] for i in plain], dtype=torch.int64)],
        )
        result = self.sampler(
            plain_logits,
            [SampleRow(q.params, q.prompt_ids, q.output_ids, q.generator) for q in rows],
        )
        tokens: list[list[int]] = [[t] for t in result.token_ids]
        logprobs: list[list[TokenLogprob | None]] = [[lp] for lp in result.logprobs]
        for i, seq in enumerate(ready):
            if seq.draft:
                accepted = self._verify(seq, logits[offsets[i] : offsets[i] + counts[i]])
                rows.append(seq)
                tokens.append(accepted)
                logprobs.append([None] * len(accepted))
        t3 = time.perf_counter()
        touched = self._update(rows, tokens, logprobs)
        outputs = self._outputs(touched)
        t4 = time.perf_counter()
        if not sched.prefills:
            n_rows = sum(s.num_tokens for s in sched.decodes)
            self.drafts.observe_step(len(sched.decodes), n_rows, (t4 - t0) * 1e3)
        self._steps += 1
        self._timing = StepTiming(
            schedule_ms=(t1 - t0) * 1e3,
            model_ms=(t2 - t1) * 1e3,
            sample_ms=(t3 - t2) * 1e3,
            update_ms=(t4 - t3) * 1e3,
        )
        return outputs

    def _cache_full_blocks(self, seq: Sequence) -> None:
        block_size = self.blocks.block_size
        if seq.num_computed // block_size > len(seq.block_hashes):
            start = len(seq.block_hashes) * block_size
            self.blocks.cache_full_blocks(
                seq.block_table,
                seq.block_hashes,
                seq.token_slice(start, seq.num_computed),
                seq.num_computed,
            )

    # -- speculative decoding ------------------------------------------------------------------

    def _propose_drafts(self) -> None:
        """Prompt-lookup drafts for decoding sequences, as long as they pay (DraftPolicy).

        Verifying k drafted tokens adds k rows to the step; with the INT4 decode stack each
        row costs ~a quarter of a one-sequence step, so a draft pays only where it is likely
        to be accepted. The policy weighs each sequence's recent acceptance and the matched
        n-gram's length against the measured cost of a row; above speculative_max_batch
        sequences nothing is drafted at all.
        """
        k = self.config.speculative_tokens
        running = self.scheduler.running
        if k <= 0 or not running or len(running) > self.config.speculative_max_batch:
            return
        for seq in running:
            p = seq.params
            if (
                seq.in_prefill
                or seq.pending_forks
                or p.has_penalties
                or p.logprobs is not None
                or len(seq.output_ids) < p.min_tokens
            ):
                continue
            seq.spec_hits *= SPEC_DECAY
            seq.spec_trials *= SPEC_DECAY
            room = min(
                k, p.max_tokens - len(seq.output_ids) - 1, self.max_model_len - seq.num_tokens - 1
            )
            draft, match = find_draft(seq.all_ids, room) if room > 0 else ([], 0)
            if not draft:
                continue
            take = self.drafts.length(
                seq.spec_hits, seq.spec_trials, match, len(running), len(draft)
            )
            seq.draft = draft[:take]
            self._spec_proposed += take

    def _verify(self, seq: Sequence, logits: torch.Tensor) -> list[int]:
        """Accept a prefix of the draft (exactly, see speculative.py) and roll the cache back."""
        row = SampleRow(seq.params, seq.prompt_ids, seq.output_ids, seq.generator)
        rows = [row] * logits.shape[0]
        processed = self.sampler.process(logits, rows)
        if seq.params.greedy:
            accepted = accept_greedy(processed, seq.draft)
        else:
            probs = self.sampler.probabilities(processed, rows)
            accepted = accept_sampled(probs, seq.draft, seq.generator)
        self._spec_accepted += len(accepted) - 1
        seq.spec_hits, seq.spec_trials = record_verify(
            seq.spec_hits, seq.spec_trials, len(seq.draft), len(accepted) - 1
        )
        # The cache now holds valid keys/values for the last real token and the accepted drafts.
        seq.num_computed += len(accepted)
        seq.draft = []
        self.blocks.trim(seq.block_table, seq.num_computed)
        self._cache_full_blocks(seq)
        return accepted

    def _fork_samples(
        self, ready: list[Sequence], logits: torch.Tensor
    ) -> tuple[list[Sequence], torch.Tensor]:
        """A prompt that just finished prefill with n > 1 splits into n samples sharing its blocks;
        each gets its own row (a copy of the prompt's logits) to draw its first token from."""
        if not any(s.pending_forks for s in ready):
            return ready, logits
        rows: list[Sequence] = []
        index: list[int] = []
        for i, seq in enumerate(ready):
            rows.append(seq)
            index.append(i)
            for k in range(1, seq.pending_forks + 1):
                child = self._new_seq(
                    seq.request_id, k, seq.prompt_ids, seq.params, seq.priority, seq.arrival
                )
                child.block_table = self.blocks.fork(seq.block_table)
                child.block_hashes = list(seq.block_hashes)
                child.num_computed = seq.num_computed
                self.scheduler.add_running(child, after=seq if k == 1 else rows[-1])
                self._requests[seq.request_id].append(child)
                rows.append(child)
                index.append(i)
            seq.pending_forks = 0
        return rows, logits[torch.tensor(index, dtype=torch.int64)]

    def _update(
        self,
        rows: list[Sequence],
        tokens: list[list[int]],
        logprobs: list[list[TokenLogprob | None]],
    ) -> list[Sequence]:
        """Append each row's new tokens (one, or several after a verified draft) until it ends."""
        for seq, toks, lps in zip(rows, tokens, logprobs, strict=True):
            for tok, lp in zip(toks, lps, strict=True):
                if seq.finished:
                    break
                self._append(seq, tok, lp)
        return rows

    def _append(self, seq: Sequence, tok: int, lp: TokenLogprob | None) -> None:
        seq.output_ids.append(tok)
        if lp is not None:
            seq.logprobs.append(lp)
        self._generation_tokens_total += 1
        p = seq.params
        if tok in p.stop_token_ids:  # the sampler bans them before min_tokens
            self._finish(seq, "stop", tok)
        elif tok in self.eos_token_ids and not p.ignore_eos:
            self._finish(seq, "stop", None)
        else:
            seq.pending_text += seq.detok.push(tok)
            if seq.detok.stopped:
                self._finish(seq, "stop", seq.detok.stop_reason, flush=False)
            elif len(seq.output_ids) >= p.max_tokens or seq.num_tokens >= self.max_model_len:
                self._finish(seq, "length", None)

    def _finish(
        self, seq: Sequence, reason: str, stop_reason: str | int | None, flush: bool = True
    ) -> None:
        if flush:
            seq.pending_text += seq.detok.flush()
        seq.status = SeqStatus.FINISHED
        seq.finish_reason = reason
        seq.stop_reason = stop_reason
        self.scheduler.remove(seq)

    def _outputs(self, touched: list[Sequence]) -> list[RequestOutput]:
        by_request: dict[str, list[Sequence]] = {}
        for seq in touched:
            by_request.setdefault(seq.request_id, []).append(seq)
        outputs = []
        for request_id, seqs in by_request.items():
            deltas = [self._delta(seq) for seq in seqs]
            all_seqs = self._requests[request_id]
            finished = all(s.finished for s in all_seqs) and not any(
                s.pending_forks for s in all_seqs
            )
            usage = Usage(
                len(all_seqs[0].prompt_ids),
                sum(len(s.output_ids) for s in all_seqs),
                cached_tokens=all_seqs[0].num_cached_prompt,
            )
            outputs.append(RequestOutput(request_id, deltas, finished, usage))
            if finished:
                del self._requests[request_id]
        return outputs

    def _delta(self, seq: Sequence) -> CompletionDelta:
        new_ids = seq.output_ids[seq.sent_tokens :]
        new_lps = seq.logprobs[seq.sent_logprobs :] if seq.params.logprobs is not None else None
        delta = CompletionDelta(
            index=seq.index,
            text=seq.pending_text,
            token_ids=new_ids,
            logprobs=new_lps,
            finish_reason=seq.finish_reason,
            stop_reason=seq.stop_reason,
        )
        seq.sent_tokens = len(seq.output_ids)
        seq.sent_logprobs = len(seq.logprobs)
        seq.pending_text = ""
        return delta

    # -- stats ---------------------------------------------------------------------------------

    def stats(self) -> EngineStats:
        return EngineStats(
            running=len(self.scheduler.running),
            waiting=self.scheduler.num_waiting,
            kv_blocks_used=self.blocks.num_used,
            kv_blocks_total=self.blocks.num_blocks,
            block_size=self.blocks.block_size,
            prompt_tokens_total=self._prompt_tokens_total,
            generation_tokens_total=self._generation_tokens_total,
            steps_total=self._steps,
            preemptions_total=self.scheduler.num_preemptions,
            last_step_ms=self._timing.total_ms,
            last_model_ms=self._timing.model_ms,
            last_timing=self._timing,
            spec_proposed_tokens=self._spec_proposed,
            spec_accepted_tokens=self._spec_accepted,
            prefix_cache_queries=self.blocks.queried_tokens,
            prefix_cache_hits=self.blocks.hit_tokens,
        )
