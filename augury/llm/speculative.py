"""Speculative decoding by prompt lookup: cheap drafts from the request's own context.

Proposal: find the most recent earlier occurrence of the sequence's last n tokens (n from
`max_n` down to `min_n`) and propose the k tokens that followed it. Input-grounded generations
(summaries, extraction, code edits) copy long runs from their prompt, so drafts are often right.

Verification: the target model scores [last token, d1 .. dk] in one forward pass, giving the
distributions p_0 .. p_k for the positions after each. Acceptance keeps the output distribution
exactly that of ordinary decoding (Leviathan et al., 2023; Chen et al., 2023). The proposal
here is deterministic (q(x) = 1 for the drafted x), so the general rule
    accept d_i with probability min(1, p_i(d_i) / q_i(d_i)),
    on rejection draw from normalize(max(0, p_i - q_i))
becomes: accept d_i with probability p_i(d_i); on rejection draw from p_i with d_i removed.
If every draft is accepted, one more token is drawn from p_k. Greedy decoding accepts d_i iff
it is the argmax of p_i, so its output is the same token sequence as without speculation.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Sequence
from statistics import median

import torch


def find_draft(
    tokens: Sequence[int], k: int, max_n: int = 4, min_n: int = 1
) -> tuple[list[int], int]:
    """Up to k tokens that followed the latest earlier match of the trailing n-gram, longest n
    first, and that n (0 and no tokens when nothing matches)."""
    if k <= 0 or len(tokens) < min_n + 1:
        return [], 0
    raw = array("i", tokens).tobytes()  # 4 bytes per token: bytes.rfind does the scanning in C
    width = 4
    for n in range(min(max_n, len(tokens) - 1), min_n - 1, -1):
        pattern = raw[-n * width :]
        end = len(raw) - width  # the match must end before the last token
        while True:
            at = raw.rfind(pattern, 0, end)
            if at < 0:
                break
            if at % width == 0:  # aligned on a token boundary
                start = at // width + n
                return list(tokens[start : start + k]), n
            end = at + len(pattern) - 1
    return [], 0


MATCH_PRIOR = {1: 0.2, 2: 0.45, 3: 0.5, 4: 0.7}
"""Chance that a draft token is accepted (given the ones before it were), by the length of the
n-gram match that proposed it: the prior a sequence's own record starts from. Measured
2026-11-23 over bench_speculative's prompts and bench_server's chat questions, greedy and at
temperature 0.7: single-token matches 0.14-0.2 in chat (0.4-0.6 while summarizing), 2-token
matches 0.25-0.8, 4-token matches 0.2-0.6 in chat and 0.7-0.98 on grounded prompts."""
PRIOR_WEIGHT = 4.0
"""The prior counts as this many observed draft positions."""
SPEC_DECAY = 0.95
"""Per step, the weight a sequence's earlier acceptance record keeps (so a sequence that stops
drafting after rejections comes back to the prior, and tries again, within ~25 steps)."""
COST_PRIOR = (0.1, 0.25)
"""Before drafted steps are timed: the fixed cost of a verify step and the cost of each drafted
row, as shares of a plain one-sequence step (measured with the INT4 decode stack: ~0.4-1 ms
fixed, ~1 ms per row, on a ~4 ms step)."""
COST_BOUNDS = ((0.0, 0.5), (0.05, 0.5))
"""The measured shares are kept within these: a few slow steps (this VM stalls now and then)
must not switch drafting off for good, since only drafted steps measure the cost again."""
COST_WINDOW = 32
"""Steps of each kind the cost estimate is fitted to."""


class DraftPolicy:
    """How many prompt-lookup tokens a sequence drafts this step: as many as pay for their
    verification, judged from measured step times and the acceptance expected of each.

    Cost: a plain step of B sequences yields B tokens in base(B) ms (the median of recent such
    steps); drafting d tokens in it adds fixed + row * d ms (a least-squares line through
    recent drafted steps' extra time; verifying has a cost of its own, then each row costs
    about the same). In tokens: B / base(B) per ms. Gain: the i-th draft token is accepted
    with probability alpha^i (it needs its predecessors accepted). A sequence drafts the k
    with the largest expected gain - cost, if positive; for one stream here that means
    alpha above ~0.3-0.4, and a batch of 4 (4x the tokens at stake per ms) hardly ever
    drafts: large batches stop drafting by themselves.

    alpha, per sequence: its decayed record of accepted / verified draft positions, on top
    of MATCH_PRIOR for the match's length with weight PRIOR_WEIGHT. So open-ended text,
    where short matches are rarely right, drafts little, and a sequence copying from its
    prompt soon drafts `max_tokens`."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._base: dict[int, deque[float]] = {}
        self._extra: deque[tuple[int, float]] = deque(maxlen=COST_WINDOW)
        """(draft rows, ms beyond the plain step of the same batch size) of drafted steps"""
        self._fit: tuple[float, float] | None = None
        """(fixed, per row) ms fitted to _extra"""

    def costs(self, batch: int) -> tuple[float, float]:
        """(fixed, per row) cost of drafting in a step of `batch` sequences, in tokens."""
        times = self._base.get(batch)
        if self._fit is None or not times:
            return COST_PRIOR[0] * batch, COST_PRIOR[1] * batch
        base = median(times)
        (f_lo, f_hi), (r_lo, r_hi) = COST_BOUNDS
        fixed = min(max(self._fit[0] / base, f_lo), f_hi)
        row = min(max(self._fit[1] / base, r_lo), r_hi)
        return fixed * batch, row * batch

    def length(self, hits: float, trials: float, match: int, batch: int, room: int) -> int:
        """Tokens to draft (<= room) for a sequence whose record is `hits` accepted of
        `trials` verified positions, from an n-gram match of length `match`."""
        prior = MATCH_PRIOR[min(max(match, 1), max(MATCH_PRIOR))]
        alpha = (hits + PRIOR_WEIGHT * prior) / (trials + PRIOR_WEIGHT)
        fixed, row = self.costs(batch)
        best_k, best, gain, chance = 0, 0.0, 0.0, alpha
        for k in range(1, min(room, self.max_tokens) + 1):
            gain += chance
            chance *= alpha
            if gain - fixed - row * k > best:
                best_k, best = k, gain - fixed - row * k
        return best_k

    def observe_step(self, seqs: int, rows: int, ms: float) -> None:
        """A decode step (no prompt chunk) of `seqs` sequences and `rows` rows took `ms`."""
        if seqs <= 0 or rows < seqs or not ms > 0:
            return
        if rows == seqs:
            self._base.setdefault(seqs, deque(maxlen=COST_WINDOW)).append(ms)
            return
        if seqs not in self._base:
            return
        self._extra.append((rows - seqs, ms - median(self._base[seqs])))
        self._fit = fit_line(self._extra)


def fit_line(points: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y on x; through the origin when x never varies."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    if var == 0:
        return 0.0, my / mx
    slope = sum((x - mx) * (y - my) for x, y in points) / var
    return my - slope * mx, slope


def record_verify(hits: float, trials: float, drafted: int, accepted: int) -> tuple[float, float]:
    """A sequence's acceptance record after a verify step that accepted `accepted` of
    `drafted` tokens: every accepted position is a hit; the first rejected one (if any) is
    the one miss (the positions after it were never tried)."""
    return hits + accepted, trials + accepted + (1 if accepted < drafted else 0)


def accept_greedy(processed: torch.Tensor, draft: Sequence[int]) -> list[int]:
    """(k + 1, V) logits -> accepted drafts followed by the target's own next token."""
    best = processed.argmax(dim=-1).tolist()
    out: list[int] = []
    for i, d in enumerate(draft):
        if best[i] != d:
            out.append(best[i])
            return out
        out.append(d)
    out.append(best[len(draft)])
    return out


def accept_sampled(
    probs: torch.Tensor, draft: Sequence[int], generator: torch.Generator | None
) -> list[int]:
    """(k + 1, V) target probabilities -> accepted drafts and one corrected or bonus token."""
    out: list[int] = []
    probs = probs / probs.sum(
        dim=-1, keepdim=True
    )  # the cuts (top-k/p, min-p) leave it unnormalized
    uniforms = torch.rand(len(draft) + 1, generator=generator).tolist()
    for i, d in enumerate(draft):
        p = probs[i]
        if uniforms[i] < float(p[d]):  # accept with probability p_i(d_i) (q is a point mass)
            out.append(d)
            continue
        residual = p.clone()
        residual[d] = 0.0  # max(0, p - q) for a point-mass q, then renormalize
        out.append(int(torch.multinomial(residual / residual.sum(), 1, generator=generator)))
        return out
    out.append(int(torch.multinomial(probs[len(draft)], 1, generator=generator)))
    return out
