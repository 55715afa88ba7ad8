"""best_seconds: warm-up calls are not timed, the fastest timed call is returned, sync brackets it."""

from __future__ import annotations

import time

from earthcast.utils.timing import best_seconds


def test_best_seconds_returns_the_fastest_timed_call_after_the_warm_up():
    delays = iter([0.05, 0.03, 0.0, 0.02])  # the first call is the untimed warm-up
    calls, syncs = [], []

    def fn():
        calls.append(1)
        time.sleep(next(delays))

    best = best_seconds(fn, runs=3, warmup=1, sync=lambda: syncs.append(1))
    assert len(calls) == 4 and len(syncs) == 6  # before and after each timed call
    assert best < 0.02  # the 0-second call, not the 50 ms warm-up
