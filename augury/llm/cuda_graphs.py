"""CUDA graphs of decode steps: a whole forward pass and LM head replayed as one launch.

On a GPU, a small model's decode step is bound by the CPU: the eager step launches ~40 kernels
per layer, each costing the CPU tens of microseconds, while the GPU finishes each in a few. A
CUDA graph records those launches once and replays them with one call.

A graph has fixed shapes and fixed input addresses, so steps are bucketed: a decode-only step
of B rows whose longest context spans N cache blocks runs the graph of (the smallest batch
bucket >= B, the smallest block bucket >= N), captured on first use. Its static inputs are
filled with the step's rows, and the padding rows repeat the last real row: the same token at
the same position writes the same key and value to the same cache slot, so padding never
touches a cache block of another sequence and never sees an empty (all -inf) mask. Steps with
prompt chunks, and decode steps larger than the biggest bucket, run eagerly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from augury.llm.batch import StepBatch
from augury.models.layers import AttentionMetadata
from augury.models.llama import KVCaches, LlamaModel

BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128)
"""Rows of the captured graphs (decode rows include speculative verification rows)."""
MIN_BLOCKS = 4
"""Smallest block bucket; buckets double from here up to the longest context."""


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    input_ids: torch.Tensor
    positions: torch.Tensor
    slot_mapping: torch.Tensor
    tables: torch.Tensor
    mask: torch.Tensor
    context_lens: torch.Tensor
    logits: torch.Tensor


def bucket(n: int, buckets: tuple[int, ...]) -> int | None:
    """The smallest bucket >= n, or None when n is larger than all."""
    return next((b for b in buckets if b >= n), None)


def block_buckets(max_blocks: int) -> tuple[int, ...]:
    """MIN_BLOCKS, doubling, up to (and always including) max_blocks."""
    out, b = [], MIN_BLOCKS
    while b < max_blocks:
        out.append(b)
        b *= 2
    return (*out, max_blocks)


class DecodeGraphs:
    """Captures and replays decode-step graphs of one model over one set of KV caches."""

    def __init__(
        self, model: LlamaModel, kv_caches: KVCaches, block_size: int, max_model_len: int
    ) -> None:
        if model.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a model on a CUDA device, not {model.device}")
        self.model = model
        self.kv_caches = kv_caches
        self.block_size = block_size
        self.block_buckets = block_buckets(-(-max_model_len // block_size))
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[tuple[int, int], _Graph] = {}
        self.replays = 0

    def run(self, batch: StepBatch) -> torch.Tensor | None:
        """(rows, vocab) float32 logits of every row of a decode-only step, on the GPU; None
        when the step has prompt chunks or no bucket fits it (the caller runs it eagerly)."""
        meta = batch.meta
        rows = int(batch.input_ids.shape[0])
        if meta.prefills or rows == 0 or meta.num_decodes != rows:
            return None
        b = bucket(rows, BATCH_BUCKETS)
        n = bucket(int(meta.decode_block_tables.shape[1]), self.block_buckets)
        if b is None or n is None:
            return None
        g = self.graphs.get((b, n))
        if g is None:
            g = self._static(b, n)
            self._fill(g, batch, rows)
            self._capture(g)
            self.graphs[(b, n)] = g
        else:
            self._fill(g, batch, rows)
        g.graph.replay()
        self.replays += 1
        return g.logits[:rows]

    def _static(self, b: int, n: int) -> _Graph:
        dev = self.model.device

        def ints(*shape: int) -> torch.Tensor:
            return torch.zeros(shape, dtype=torch.int64, device=dev)

        return _Graph(
            graph=torch.cuda.CUDAGraph(),
            input_ids=ints(b),
            positions=ints(b),
            slot_mapping=ints(b),
            tables=ints(b, n),
            mask=torch.zeros((b, 1, 1, n * self.block_size), dtype=torch.float32, device=dev),
            context_lens=ints(b),
            logits=torch.empty(0, device=dev),
        )

    def _fill(self, g: _Graph, batch: StepBatch, rows: int) -> None:
        """Copy the step's rows into the graph's inputs; padding rows repeat the last row."""
        meta = batch.meta
        width = meta.decode_block_tables.shape[1]
        for dst, src in (
            (g.input_ids, batch.input_ids),
            (g.positions, batch.positions),
            (g.slot_mapping, meta.slot_mapping),
            (g.context_lens, meta.decode_context_lens),
        ):
            dst[:rows].copy_(src, non_blocking=True)
            dst[rows:].copy_(src[rows - 1 :].expand(dst.shape[0] - rows), non_blocking=True)
        g.tables.zero_()
        g.tables[:rows, :width].copy_(meta.decode_block_tables, non_blocking=True)
        g.tables[rows:] = g.tables[rows - 1]
        keys = width * self.block_size
        g.mask.fill_(float("-inf"))
        g.mask[:rows, ..., :keys].copy_(meta.decode_mask, non_blocking=True)
        g.mask[rows:] = g.mask[rows - 1]

    def _capture(self, g: _Graph) -> None:
        b = g.input_ids.shape[0]
        meta = AttentionMetadata(
            slot_mapping=g.slot_mapping,
            prefills=[],
            decode_start=0,
            decode_block_tables=g.tables,
            decode_mask=g.mask,
            decode_context_lens=g.context_lens,
        )

        def forward() -> torch.Tensor:
            hidden = self.model(g.input_ids, g.positions, self.kv_caches, meta)
            return self.model.compute_logits(hidden)

        with torch.inference_mode():
            # Warm up on a side stream (lazy cuBLAS setup must not happen inside the capture).
            # The warm-up writes this step's own keys and values, which the replay rewrites.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                forward()
            torch.cuda.current_stream().wait_stream(side)
            with torch.cuda.graph(g.graph, pool=self.pool):
                g.logits = forward()
        assert g.logits.shape[0] == b
