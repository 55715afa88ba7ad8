"""``EpochSampler``: per-epoch shuffling of sequences, sharded over ranks, resumable mid-epoch.

The order of epoch ``e`` is a pure function of ``(seed, e)`` (a ``torch.randperm`` with its own
generator), so it never depends on the global random state and a resumed run sees exactly the
sequences an uninterrupted run would have seen. Rank ``r`` takes every ``num_replicas``-th index
starting at ``r``. For training (``pad=True``), like ``DistributedSampler``, the index list is
padded by repeating its head until it divides evenly, so every rank takes the same number of
steps. Evaluation (``pad=False``) must not pad: a repeated sample would be scored twice and the
scores would depend on the number of processes; its shards differ by at most one sample.

Resuming: ``resume(epoch, samples_done)`` makes the next iteration of that epoch skip the
samples this rank has already consumed; ``len()`` stays the full epoch length, as the training
loop counts the skipped batches as done.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Indices of one rank for one epoch (see the module docstring).

    Args:
        length: number of samples in the data set.
        shuffle: draw a new permutation every epoch (False: data-set order, for evaluation).
        seed: base seed; epoch ``e`` uses ``seed + e``.
        num_replicas, rank: data-parallel world size and this process's rank.
        pad: repeat the head so every rank gets ``ceil(length / num_replicas)`` indices
            (training); False gives each rank its own samples only (evaluation).
    """

    def __init__(
        self,
        length: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        pad: bool = True,
    ):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        self.length, self.shuffle, self.seed, self.pad = length, shuffle, seed, pad
        self.num_replicas, self.rank = num_replicas, rank
        if pad:
            self.num_samples = math.ceil(length / num_replicas) if length else 0
        else:
            self.num_samples = len(range(rank, length, num_replicas))
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before every epoch; a pending resume applies to its own epoch only."""
        if epoch != self.epoch:
            self._skip = 0
        self.epoch = epoch

    def resume(self, epoch: int, samples_done: int) -> None:
        """Skip the first ``samples_done`` indices of this rank when epoch ``epoch`` is iterated next."""
        self.epoch, self._skip = epoch, max(0, samples_done)

    def indices(self) -> list[int]:
        """All indices of this rank for the current epoch (ignores a pending skip)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        if not self.pad:
            return order[self.rank :: self.num_replicas]
        total = self.num_samples * self.num_replicas
        while len(order) < total:  # pad by repeating the head (only when sharded unevenly)
            order += order[: total - len(order)]
        return order[self.rank : total : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        return iter(self.indices()[skip:])

    def __len__(self) -> int:
        return self.num_samples
