"""``ForecastDataModule``: one Lightning data module for every registered data set.

* ``prepare_data`` only makes data exist: it checks the root and, with ``synthesize=True`` and no
  data there, writes a synthetic look-alike (Lightning runs it on one process per node).
* ``setup(stage)`` builds the splits the stage needs (``fit``: train + val; ``validate``: val;
  ``test``/``predict``: test) through the data set's :class:`~earthcast.data.specs.DatasetSpec`.
* Loaders: :class:`~earthcast.data.samplers.EpochSampler` shuffles the training sequences anew
  every epoch (seed + epoch) and shards every split over data-parallel ranks; evaluation keeps
  data-set order. Workers persist across epochs; the loader generator is seeded.
* ``contract`` describes the data for checkpoints (``CONTRACT_KEYS``): window lengths, frame
  size, channels, scaling, units, variable, frame interval and event thresholds.
* ``state_dict`` records how far the current epoch got, so a resumed run continues with the very
  next batch of the same permutation (Lightning stores it in every checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from earthcast.data.config import DataConfig
from earthcast.data.samplers import EpochSampler
from earthcast.data.specs import CONTRACT_KEYS, SPLITS, DatasetSpec
from earthcast.data.synthesis import check_synthesis, interrupted, synthesis_record, synthesizing

_STAGE_SPLITS: dict[str | None, tuple[str, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
    None: SPLITS,
}


class ForecastDataModule(L.LightningDataModule):
    """Data of one experiment (see the module docstring).

    Args:
        config: which data set, where, and how to batch it.
        seed: seed of the per-epoch shuffling and of the loader generator.
    """

    def __init__(self, config: DataConfig, seed: int = 0) -> None:
        from earthcast.data import DATASETS

        super().__init__()
        if config.root is None:
            raise ValueError(f"data.root is not set: where do the '{config.name}' data live?")
        self.config, self.seed = config, seed
        self.spec: DatasetSpec = DATASETS.create(config.name)
        self.root = Path(config.root).expanduser()
        self.datasets: dict[str, Dataset] = {}
        self._resume: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for spawned processes (``ddp_spawn``, notebooks): the spec holds closures, so
        it travels as its registered name and is looked up again on arrival."""
        state = self.__dict__.copy()
        state["spec"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from earthcast.data import DATASETS

        self.__dict__.update(state)
        self.spec = DATASETS.create(self.config.name)

    # ------------------------------------------------------------------------------ stages
    def prepare_data(self) -> None:
        record, parameters = synthesis_record(self.root), dict(self.config.synthetic)
        if interrupted(record) and self.config.synthesize:
            print(f"the synthetic data at {self.root} were never finished (interrupted); writing them again")
        elif self.spec.present(self.root):
            # complete synthetic data of other settings are refused, not reused
            check_synthesis(self.root, self.config.name, parameters if self.config.synthesize else None)
            return
        else:
            check_synthesis(self.root, self.config.name)  # an interrupted writer, named
        if not self.config.synthesize:
            where = "" if self.root.exists() else f" (no such path; relative paths start at {Path.cwd()})"
            raise FileNotFoundError(
                f"no '{self.config.name}' data at {self.root}{where}. Give the data with --set "
                f"data.root=PATH; {self.spec.source_hint}. For a demo or a test, set "
                "data.synthesize=true to write a synthetic look-alike there."
            )
        if self.spec.synthesize is None:
            raise ValueError(f"data set '{self.config.name}' has no synthetic writer; provide real data")
        with synthesizing(self.root, self.config.name, parameters):
            self.spec.synthesize(self.root, self.config)

    def setup(self, stage: str | None = None) -> None:
        wanted = _STAGE_SPLITS.get(stage, SPLITS)
        missing = tuple(s for s in wanted if s not in self.datasets)
        if not missing:
            return
        if not self.spec.present(self.root):
            raise FileNotFoundError(f"no '{self.config.name}' data at {self.root}; run prepare_data() first")
        self.datasets.update(self.spec.build(self.root, missing, self.config))
        for split in missing:
            if len(self.datasets[split]) == 0:
                raise ValueError(f"the '{split}' split of '{self.config.name}' at {self.root} is empty")

    @property
    def train_dataset(self) -> Dataset:
        return self._dataset("train")

    @property
    def val_dataset(self) -> Dataset:
        return self._dataset("val")

    @property
    def test_dataset(self) -> Dataset:
        return self._dataset("test")

    def first_test_batch(self, count: int) -> dict[str, torch.Tensor]:
        """The first ``count`` test sequences as one batch: ``inputs``/``targets`` ``(B, T, H, W, C)``.

        For evaluations that score a fixed, small set of contexts (ensemble demos and benchmarks).
        """
        return self._stack(self.test_dataset, range(min(count, len(self.test_dataset))))

    def spaced_batch(self, split: str, count: int) -> dict[str, torch.Tensor]:
        """``count`` sequences evenly spaced over a split, as one batch (``inputs``/``targets``).

        Neighbouring windows often come from the same event; spacing them out gives a fixed set of
        contexts that covers the split (e.g. to tune a guidance scale on validation, then score on test).
        """
        dataset = self._dataset(split)
        positions = torch.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().long()
        return self._stack(dataset, positions.unique().tolist())

    @staticmethod
    def _stack(dataset: Dataset, indices: Iterable[int]) -> dict[str, torch.Tensor]:
        items = [dataset[i] for i in indices]
        return {key: torch.stack([item[key] for item in items]) for key in ("inputs", "targets")}

    def _dataset(self, split: str) -> Dataset:
        if split not in self.datasets:
            raise RuntimeError(f"the '{split}' split is not set up; call setup() with a stage that needs it")
        return self.datasets[split]

    # ------------------------------------------------------------------------------ contract
    @property
    def contract(self) -> dict[str, Any]:
        """The data contract (``CONTRACT_KEYS`` plus ``scale_factor``/``scale_offset`` when known)."""
        if not self.datasets:
            raise RuntimeError("the data contract needs data: call prepare_data() and setup() first")
        dataset = next(iter(self.datasets.values()))
        sample = dataset[0]
        t_in, height, width, c_in = sample["inputs"].shape
        t_out, _, _, c_out = sample["targets"].shape
        contract = {key: None for key in CONTRACT_KEYS}
        contract.update(self.spec.info)
        contract.update(self.spec.describe(dataset))
        contract.update(
            dataset=self.config.name,
            in_len=int(t_in),
            out_len=int(t_out),
            height=int(height),
            width=int(width),
            channels_in=int(c_in),
            channels_out=int(c_out),
            thresholds=[float(t) for t in contract.get("thresholds") or []],
        )
        return contract

    # ------------------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self._dataset(split)
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        if not shuffle and len(dataset) < world:
            # every process must score at least one sample: the metric states are summed over them
            raise ValueError(
                f"the {split} split has {len(dataset)} samples for {world} processes; evaluate on "
                f"fewer devices (trainer.devices) or with more {split} samples"
            )
        # evaluation shards are not padded: a repeated sample would be scored twice
        sampler = EpochSampler(
            len(dataset), shuffle=shuffle, seed=self.seed, num_replicas=world, rank=rank, pad=shuffle
        )
        cfg = self.config
        batch_size = cfg.batch_size if shuffle else (cfg.eval_batch_size or cfg.batch_size)
        if shuffle and self._resume:
            self._apply_resume(sampler, batch_size)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=cfg.num_workers,
            persistent_workers=cfg.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            generator=torch.Generator().manual_seed(self.seed),
        )

    # ------------------------------------------------------------------------------ resuming
    def state_dict(self) -> dict[str, Any]:
        """Progress of the current training epoch (written into every checkpoint of a fit)."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        batches = trainer.num_training_batches
        return {
            "epoch": int(trainer.current_epoch),
            "batches_done": int(progress.ready),
            "epoch_batches": int(batches) if batches != float("inf") else -1,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = dict(state_dict)

    def _apply_resume(self, sampler: EpochSampler, batch_size: int) -> None:
        epoch, done = self._resume["epoch"], self._resume["batches_done"]
        per_epoch = self._resume.get("epoch_batches", -1)
        if per_epoch < 0:
            per_epoch = -(-len(sampler) // batch_size)
        if done >= per_epoch:  # the checkpoint closed its epoch: start the next one
            sampler.resume(epoch + 1, 0)
        else:
            sampler.resume(epoch, done * batch_size)
        self._resume = {}
