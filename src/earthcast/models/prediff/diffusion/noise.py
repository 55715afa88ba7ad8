"""Where the reverse chain's Gaussian noise comes from: one generator, or one per context.

With one generator the members of every context in a batch draw from one stream, so a context's
ensemble depends on which contexts share its batch. With ``per_context_generators(seed, ids)``
each context's members draw from their own stream, derived from ``(seed, sample id)``: the same
seed gives a context the same ensemble whatever the batch size, ``--start`` or ``--index``.
Rows of a noise tensor are ordered ``(context, member)``, as the sampler's ``(b s)`` batches are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

NoiseSource = torch.Generator | Sequence[torch.Generator] | None
"""A generator for the whole batch, one per context (rows split evenly among them), or None
(the global generator)."""


def standard_normal(
    shape: Sequence[int], source: NoiseSource, device: torch.device | str | None, dtype: torch.dtype
) -> Tensor:
    """``N(0, I)`` of ``shape``; with one generator per context, context ``i`` fills rows
    ``i·n … (i+1)·n − 1`` (``n = shape[0] / contexts``) from its own generator."""
    shape = tuple(shape)
    if source is None or isinstance(source, torch.Generator):
        if device is None and source is not None:
            device = source.device  # a CUDA generator can only fill CUDA tensors
        return torch.randn(shape, generator=source, device=device, dtype=dtype)
    if not source or shape[0] % len(source):
        raise ValueError(f"{len(source)} per-context generators cannot split {shape[0]} noise rows evenly")
    rows = (shape[0] // len(source), *shape[1:])
    return torch.cat([torch.randn(rows, generator=g, device=device or g.device, dtype=dtype) for g in source])


def per_context_generators(
    seed: int, sample_ids: Sequence[int], device: torch.device | str
) -> list[torch.Generator]:
    """One generator per sample id, seeded from ``(seed, id)`` (independent streams, reproducible)."""
    generators = []
    for sample in sample_ids:
        state = np.random.SeedSequence([int(seed), int(sample)]).generate_state(1, dtype=np.uint64)[0]
        generators.append(torch.Generator(device=device).manual_seed(int(state) & (2**63 - 1)))
    return generators
