"""Continuous batching: which sequences run in the next step, and how many tokens each.

Every step has a token budget. Running sequences that decode get their one token first, so a
long prompt never stalls them; the rest of the budget goes to prompt chunks (chunked prefill) of
running sequences, then of waiting ones in priority-then-arrival order. When the cache cannot
hold a step, the least important, most recently admitted sequence is preempted: its blocks are
freed and it waits to be recomputed from its tokens. Nothing is dropped.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from augury.llm.kv_cache import BlockCopy, BlockManager
from augury.llm.sequence import SeqStatus, Sequence


@dataclass
class ScheduledSeq:
    seq: Sequence
    num_tokens: int
    """Tokens of the sequence computed this step, starting at seq.num_computed."""


@dataclass
class SchedulerOutput:
    """The contract handed to the runner: what to compute this step."""

    prefills: list[ScheduledSeq] = field(default_factory=list)
    decodes: list[ScheduledSeq] = field(default_factory=list)
    copies: list[BlockCopy] = field(default_factory=list)
    """Block copies (copy-on-write) to run before the forward pass."""
    preempted: list[Sequence] = field(default_factory=list)
    scheduled_ids: set[int] = field(default_factory=set)
    """seq_id of every sequence in prefills or decodes."""

    def add(self, seq: Sequence, num_tokens: int, prefill: bool) -> None:
        (self.prefills if prefill else self.decodes).append(ScheduledSeq(seq, num_tokens))
        self.scheduled_ids.add(seq.seq_id)

    @property
    def is_empty(self) -> bool:
        return not self.prefills and not self.decodes

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.prefills) + len(self.decodes)


class Scheduler:
    def __init__(
        self, blocks: BlockManager, max_num_seqs: int, max_num_batched_tokens: int
    ) -> None:
        if max_num_batched_tokens < max_num_seqs:
            raise ValueError(
                f"max_num_batched_tokens ({max_num_batched_tokens}) must be at least "
                f"max_num_seqs ({max_num_seqs}) so every running sequence can decode each step"
            )
        self.blocks = blocks
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.running: list[Sequence] = []
        """In admission order (oldest first)."""
        self._waiting: list[tuple[int, float, int, Sequence]] = []
        self.num_preemptions = 0

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    def add(self, seq: Sequence) -> None:
        seq.status = SeqStatus.WAITING
        heapq.heappush(self._waiting, (seq.priority, seq.arrival, seq.seq_id, seq))

    def add_running(self, seq: Sequence, after: Sequence) -> None:
        """Insert a forked sample right after its parent (it shares the parent's blocks)."""
        seq.status = SeqStatus.RUNNING
        self.running.insert(self.running.index(after) + 1, seq)

    def remove(self, seq: Sequence) -> None:
        """Take a sequence out (finished or aborted) and free its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        else:
            kept = [w for w in self._waiting if w[3] is not seq]
            if len(kept) != len(self._waiting):
                self._waiting = kept
                heapq.heapify(self._waiting)
        self.blocks.release(seq.block_table)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        # Decodes first (one token each), then chunks of prompts being prefilled.
        for phase_prefill in (False, True):
            i = 0
            while i < len(self.running):
                seq = self.running[i]
                if seq.in_prefill is not phase_prefill or seq.seq_id in out.scheduled_ids:
                    i += 1
                    continue
                n = min(seq.num_uncomputed, budget) if phase_prefill else 1 + len(seq.draft)
                if (
                    n > 1
                    and seq.draft
                    and (
                        n > budget
                        or not self.blocks.can_reserve(seq.block_table, seq.num_computed, n)
                    )
                ):
                    seq.draft = []  # never preempt anyone for a speculative draft
                    n = 1
                if n == 0:
                    break
                if not self._make_room(seq, n, out):
                    continue  # seq itself was preempted; running shrank at index i
                out.copies += self.blocks.reserve(seq.block_table, seq.num_computed, n)
                out.add(seq, n, prefill=phase_prefill)
                budget -= n
                i += 1
        # Admit waiting sequences while budget, slots and blocks allow (none after a preemption).
        while self._waiting and budget > 0 and not out.preempted:
            if len(self.running) >= self.max_num_seqs:
                break
            seq = self._waiting[0][3]
            self._match_prefix(seq)
            n = min(seq.num_uncomputed, budget)
            if not self.blocks.can_reserve(seq.block_table, seq.num_computed, n):
                self._unmatch(seq)
                break  # first come, first served: do not let later requests jump ahead
            heapq.heappop(self._waiting)
            out.copies += self.blocks.reserve(seq.block_table, seq.num_computed, n)
            seq.status = SeqStatus.RUNNING
            self.running.append(seq)
            out.add(seq, n, prefill=True)
            budget -= n
        return out

    def _match_prefix(self, seq: Sequence) -> None:
        """Start a fresh sequence from the cached blocks of its longest cached prefix."""
        if seq.num_computed or seq.block_table:
            return
        blocks, hashes = self.blocks.match(seq.all_ids)
        seq.block_table, seq.block_hashes = blocks, hashes
        seq.num_computed = len(blocks) * self.blocks.block_size
        seq.num_cached_prompt = min(seq.num_computed, len(seq.prompt_ids))

    def _unmatch(self, seq: Sequence) -> None:
        self.blocks.release(seq.block_table)
        seq.block_hashes = []
        seq.num_computed = 0

    def _make_room(self, seq: Sequence, n: int, out: SchedulerOutput) -> bool:
        """Preempt others until `seq` can take `n` tokens; False if `seq` had to go itself."""
        while not self.blocks.can_reserve(seq.block_table, seq.num_computed, n):
            victim = self._pick_victim(seq, out)
            self._preempt(victim if victim is not None else seq, out)
            if victim is None:
                return False
        return True

    def _pick_victim(self, keep: Sequence, out: SchedulerOutput) -> Sequence | None:
        """The least important, most recently admitted running sequence not yet scheduled."""
        best: tuple[int, int] | None = None
        victim = None
        for idx, s in enumerate(self.running):
            if s is keep or s.seq_id in out.scheduled_ids:
                continue
            key = (s.priority, idx)
            if best is None or key > best:
                best, victim = key, s
        return victim

    def _preempt(self, seq: Sequence, out: SchedulerOutput) -> None:
        self.running.remove(seq)
        self.blocks.release(seq.block_table)
        seq.block_hashes = []
        seq.num_computed = 0  # recompute prompt + output so far when readmitted
        self.add(seq)
        out.preempted.append(seq)
        self.num_preemptions += 1
