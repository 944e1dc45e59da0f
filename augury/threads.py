"""torch's intra-op thread count, set for the calling thread (it is per thread under OpenMP).

torch initializes a thread's count once, at its first parallel op, to the last count any
thread set; a count set before that is overwritten. So the LLM engine's thread, set to two
threads while a predictive model's thread set one, ran every step on one thread. Each OpenMP
team also keeps its workers: a server whose predictive models run on several threads has more
OpenMP threads than cores, and libgomp then barely spins before a worker sleeps (single-stream
decode 185 -> 73 tok/s with the MiniLM model beside it). Hence: the engine's thread uses
`set_torch_threads(n)`, every other thread that runs torch uses one. (The predictive models'
threads skip Augury's C++ kernels, which only the engine runs.)
"""

from __future__ import annotations

import threading

import torch

from augury.kernels.loader import kernel_ops

_set = threading.local()  # the count this thread was given (`n`)


def set_torch_threads(n: int) -> None:
    """Run this thread's torch ops on `n` threads, for good (cheap when already so: the
    predictive runtime calls it per batch)."""
    if n < 1:
        raise ValueError(f"torch threads must be at least 1, got {n}")
    if getattr(_set, "n", None) == n and torch.get_num_threads() == n:
        return
    # A parallel op (65,536 elements, above torch's grain of 32,768) makes torch initialize
    # this thread's count now, so the count set below is not overwritten later; Augury's C++
    # kernels keep their own copy of torch's once-per-thread flag.
    torch.ones(1 << 16).add_(1)
    if n > 1 and (ops := kernel_ops()) is not None:
        ops.init_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    _set.n = n
