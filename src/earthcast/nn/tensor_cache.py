"""``tensor_cache``: ``functools.lru_cache`` for pure functions that build tensors (cuboid masks,
relative-position indices, kernel taps) from hashable arguments, bypassed while PyTorch traces.

While ``torch.compile`` or ``torch.export`` traces a model, a call may build FakeTensors (export
runs our Python with fake inputs) or be inlined into a graph. Such a result must never be stored:
an eager call that later read it would compute with FakeTensors. So while tracing the function is
simply called (Dynamo then traces it, which is exactly what the cache would return); otherwise the
cached result is returned.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

__all__ = ["tensor_cache"]

F = TypeVar("F", bound=Callable)


def tensor_cache(maxsize: int = 256) -> Callable[[F], F]:
    """Decorator: an LRU cache of ``maxsize`` entries that tracing calls neither read nor fill."""

    def decorate(fn: F) -> F:
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            if torch.compiler.is_compiling():  # torch.compile and torch.export, strict or not
                return fn(*args, **kwargs)
            return cached(*args, **kwargs)

        call.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        call.cache_info = cached.cache_info  # type: ignore[attr-defined]
        return call  # type: ignore[return-value]

    return decorate
