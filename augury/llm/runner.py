"""Runs one step of the model for a SchedulerOutput and returns the logits that need sampling."""

from __future__ import annotations

import torch

from augury.llm.batch import SeqWork, build_step_batch
from augury.llm.scheduler import ScheduledSeq, SchedulerOutput
from augury.llm.sequence import Sequence
from augury.models.llama import KVCaches, LlamaModel


class ModelRunner:
    def __init__(self, model: LlamaModel, kv_caches: KVCaches, block_size: int) -> None:
        self.model = model
        self.kv_caches = kv_caches
        self.block_size = block_size
        self.device = model.device

    def execute(self, sched: SchedulerOutput) -> tuple[list[Sequence], torch.Tensor]:
        """Run the step; return the sequences whose scheduled tokens reach their end (they get a
        new token) and their (N, vocab) float32 logits, in the same order."""
        self._copy_blocks(sched)
        prefills = [self._work(s) for s in sched.prefills]
        decodes = [self._work(s) for s in sched.decodes]
        batch = build_step_batch(prefills, decodes, self.block_size, self.device)
        scheduled = sched.prefills + sched.decodes
        # Only sequences whose chunk reaches their last token need logits (a partial prompt chunk
        # does not).
        want = [
            i
            for i, s in enumerate(scheduled)
            if s.seq.num_computed + s.num_tokens == s.seq.num_tokens
        ]
        with torch.inference_mode():
            hidden = self.model(batch.input_ids, batch.positions, self.kv_caches, batch.meta)
            index = batch.logits_index[torch.tensor(want, dtype=torch.int64, device=self.device)]
            logits = self.model.compute_logits(hidden[index]).cpu()
        return [scheduled[i].seq for i in want], logits

    def _work(self, s: ScheduledSeq) -> SeqWork:
        seq = s.seq
        start = seq.num_computed
        tokens = seq.token_slice(start, start + s.num_tokens)
        return SeqWork(tokens, start, seq.block_table)

    def _copy_blocks(self, sched: SchedulerOutput) -> None:
        if not sched.copies:
            return
        src = torch.tensor([c.src for c in sched.copies], dtype=torch.int64, device=self.device)
        dst = torch.tensor([c.dst for c in sched.copies], dtype=torch.int64, device=self.device)
        with torch.inference_mode():
            for k, v in self.kv_caches:
                k[:, dst] = k[:, src]  # (n_kv, num_blocks, block_size, hd)
                v[:, dst] = v[:, src]
