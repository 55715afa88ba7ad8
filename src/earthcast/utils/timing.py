"""Best-of-N wall-clock timing, shared by the CPU kernel choice (``nn/rowmm.py``) and the
benchmarks: the minimum is the least noisy figure on a shared machine."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(
    fn: Callable[[], object], runs: int = 5, warmup: int = 1, sync: Callable[[], None] | None = None
) -> float:
    """The shortest of ``runs`` timed calls of ``fn`` after ``warmup`` untimed ones; ``sync`` (e.g.
    ``torch.cuda.synchronize``) runs before the clock starts and before it stops."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(runs):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - t0)
    return best
