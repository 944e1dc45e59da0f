"""Runs one step of the model for a SchedulerOutput and returns the logits that need sampling."""

from __future__ import annotations

import torch

from augury.llm.batch import SeqWork, build_step_batch
from augury.llm.cuda_graphs import DecodeGraphs
from augury.llm.scheduler import ScheduledSeq, SchedulerOutput
from augury.llm.sequence import Sequence
from augury.models.llama import KVCaches, LlamaModel


class ModelRunner:
    def __init__(
        self,
        model: LlamaModel,
        kv_caches: KVCaches,
        block_size: int,
        graphs: DecodeGraphs | None = None,
    ) -> None:
        self.model = model
        self.kv_caches = kv_caches
        self.block_size = block_size
        self.device = model.device
        self.graphs = graphs
        """CUDA graphs of decode-only steps (GPU only; None runs every step eagerly)."""

    def execute(self, sched: SchedulerOutput) -> tuple[list[Sequence], list[int], torch.Tensor]:
        """Run the step. Returns the sequences whose scheduled tokens reach their end (they get
        new tokens), how many logits rows each has (1, or 1 + drafts when verifying a draft),
        and those (rows, vocab) float32 logits, in the same order."""
        self._copy_blocks(sched)
        prefills = [self._work(s) for s in sched.prefills]
        decodes = [self._work(s) for s in sched.decodes]
        batch = build_step_batch(prefills, decodes, self.block_size, self.device)
        # Only sequences whose chunk reaches their last token need logits (a partial prompt chunk
        # does not); logits_index holds num_logits entries per sequence, in work order.
        ready: list[Sequence] = []
        counts: list[int] = []
        index: list[int] = []
        offset = 0
        for s, w in zip(sched.prefills + sched.decodes, prefills + decodes, strict=True):
            if s.seq.num_computed + s.num_tokens >= s.seq.num_tokens:
                ready.append(s.seq)
                counts.append(w.num_logits)
                index.extend(range(offset, offset + w.num_logits))
            offset += w.num_logits
        with torch.inference_mode():
            # A decode-only step needs every row's logits, in order: the graph's output as is.
            replayed = self.graphs.run(batch) if self.graphs else None
            if replayed is not None:
                return ready, counts, replayed.cpu()
            hidden = self.model(batch.input_ids, batch.positions, self.kv_caches, batch.meta)
            rows = batch.logits_index[torch.tensor(index, dtype=torch.int64, device=self.device)]
            logits = self.model.compute_logits(hidden[rows]).cpu()
        return ready, counts, logits

    def _work(self, s: ScheduledSeq) -> SeqWork:
        """The tokens a sequence computes this step: cached-next tokens, then any draft."""
        seq = s.seq
        start = seq.num_computed
        end = start + s.num_tokens
        real = seq.token_slice(start, min(end, seq.num_tokens))
        drafted = seq.draft[: max(0, end - seq.num_tokens)]
        return SeqWork(real + drafted, start, seq.block_table, num_logits=1 + len(drafted))

    def _copy_blocks(self, sched: SchedulerOutput) -> None:
        if not sched.copies:
            return
        src = torch.tensor([c.src for c in sched.copies], dtype=torch.int64, device=self.device)
        dst = torch.tensor([c.dst for c in sched.copies], dtype=torch.int64, device=self.device)
        with torch.inference_mode():
            for k, v in self.kv_caches:
                k[:, dst] = k[:, src]  # (n_kv, num_blocks, block_size, hd)
                v[:, dst] = v[:, src]
