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
from collections.abc import Sequence

import torch


def propose_ngram(tokens: Sequence[int], k: int, max_n: int = 4, min_n: int = 1) -> list[int]:
    """Up to k tokens that followed the latest earlier match of the trailing n-gram."""
    if k <= 0 or len(tokens) < min_n + 1:
        return []
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
                return list(tokens[start : start + k])
            end = at + len(pattern) - 1
    return []


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
