"""The data-module registry, ``ForecastDataModule`` stages and contract, and ``EpochSampler``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from earthcast.data import DATASETS, create_datamodule, list_datasets
from earthcast.data.samplers import EpochSampler
from earthcast.data.specs import CONTRACT_KEYS

TINY_NBODY = {"size": 16, "seq_len": 8, "n_train": 10, "n_val": 4, "n_test": 4}


@pytest.fixture(scope="module")
def nbody_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nbody")
    create_datamodule("nbody", root=str(root), synthesize=True, synthetic=TINY_NBODY).prepare_data()
    return root


def test_registry_names_and_errors():
    assert list_datasets() == [
        "enso",
        "gridded",
        "moving_mnist",
        "nbody",
        "radar",
        "radar_sources",
        "sevir",
        "sevirlr",
    ]
    assert "SEVIR" in DATASETS
    with pytest.raises(ValueError, match=r"unknown dataset 'nbdy'. Valid names: enso, gridded"):
        create_datamodule("nbdy", root="x")
    with pytest.raises(ValueError, match=r"unknown data setting\(s\) \['batchsize'\]; valid settings: root"):
        create_datamodule("nbody", root="x", batchsize=2)
    with pytest.raises(ValueError, match=r"data.root is not set"):
        create_datamodule("nbody")


def test_missing_data_says_how_to_get_it(tmp_path):
    dm = create_datamodule("sevir", root=str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError, match=r"no 'sevir' data at .*s3://sevir.*data.synthesize=true"):
        dm.prepare_data()


def test_interrupted_synthesis_is_written_again_and_other_settings_are_refused(tmp_path, monkeypatch):
    """A writer killed after the first split left data that ``present`` accepted, and every
    later run failed on the missing split; data of other settings were reused as asked-for."""
    from earthcast.data import nbody
    from earthcast.data.synthesis import RECORD_NAME, synthesis_record

    root = tmp_path / "nbody"
    options = {"root": str(root), "synthesize": True, "synthetic": TINY_NBODY, "in_len": 4, "out_len": 4}
    real_writer = nbody.write_nbody

    def killed_after_train(out_dir, *args, **kwargs):  # the train split lands, then the "kill"
        (Path(out_dir) / "nbody_train.h5").write_bytes(b"a split")
        raise KeyboardInterrupt

    monkeypatch.setattr(nbody, "write_nbody", killed_after_train)
    with pytest.raises(KeyboardInterrupt):
        create_datamodule("nbody", **options).prepare_data()
    assert synthesis_record(root) == {"dataset": "nbody", "parameters": TINY_NBODY, "complete": False}
    with pytest.raises(ValueError, match=r"were being written when the writer was interrupted.*delete"):
        create_datamodule("nbody", **{**options, "synthesize": False}).prepare_data()
    monkeypatch.setattr(nbody, "write_nbody", real_writer)
    dm = create_datamodule("nbody", **options)
    dm.prepare_data()  # written again, whole
    dm.setup("fit")
    assert len(dm.datasets["val"]) > 0 and synthesis_record(root)["complete"] is True
    other = {**options, "synthetic": {**TINY_NBODY, "n_val": 3}}
    with pytest.raises(ValueError, match=r"made with data.synthetic=.*'n_val': 4.*another data.root"):
        create_datamodule("nbody", **other).prepare_data()
    create_datamodule("nbody", **options).prepare_data()  # the same settings: reused
    assert (root / RECORD_NAME).is_file()  # inside a data folder


def test_stages_build_only_their_splits(nbody_root):
    dm = create_datamodule("nbody", root=str(nbody_root), in_len=4, out_len=4, num_workers=0)
    dm.setup("test")
    assert set(dm.datasets) == {"test"}
    with pytest.raises(RuntimeError, match=r"'train' split is not set up"):
        dm.train_dataloader()
    dm.setup("fit")
    assert set(dm.datasets) == {"train", "val", "test"}
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [10, 4, 4]


def test_fixed_batches_first_and_evenly_spaced(nbody_root):
    dm = create_datamodule("nbody", root=str(nbody_root), in_len=4, out_len=4)
    dm.setup("fit")
    dm.setup("test")
    first = dm.first_test_batch(3)
    assert first["inputs"].shape == (3, 4, 16, 16, 1) and first["targets"].shape == (3, 4, 16, 16, 1)
    assert torch.equal(first["inputs"][1], dm.datasets["test"][1]["inputs"])
    spaced = dm.spaced_batch("train", 4)  # 10 training sequences -> indices 0, 3, 6, 9
    expected = torch.stack([dm.datasets["train"][i]["targets"] for i in (0, 3, 6, 9)])
    assert torch.equal(spaced["targets"], expected)
    assert len(dm.spaced_batch("val", 99)["inputs"]) == 4  # capped at the split's size


def test_contract(nbody_root):
    dm = create_datamodule("nbody", root=str(nbody_root), in_len=3, out_len=5, options={"rescale": "255"})
    dm.setup("test")
    contract = dm.contract
    assert set(CONTRACT_KEYS) <= set(contract)
    assert (contract["in_len"], contract["out_len"], contract["height"], contract["channels_out"]) == (
        3,
        5,
        16,
        1,
    )
    assert contract["scale"] == "255" and contract["scale_factor"] == 1.0 and contract["thresholds"] == []


def test_datamodule_pickles_for_spawned_processes(nbody_root):
    """``ddp_spawn`` and spawned notebooks pickle the data module; its spec holds closures."""
    import pickle

    dm = create_datamodule("nbody", root=str(nbody_root), in_len=3, out_len=5)
    dm.setup("test")
    copy = pickle.loads(pickle.dumps(dm))
    assert copy.contract == dm.contract
    assert torch.equal(copy.test_dataset[0]["inputs"], dm.test_dataset[0]["inputs"])


def test_unknown_dataset_option_lists_the_accepted_ones(nbody_root):
    dm = create_datamodule("nbody", root=str(nbody_root), options={"rescal": "01"})
    with pytest.raises(ValueError, match=r"NBodyDataset does not take \['rescal'\].*'rescale'"):
        dm.setup("test")
    with pytest.raises(ValueError, match=r"one window per sequence: data.stride cannot be set"):
        create_datamodule("nbody", root=str(nbody_root), stride=2).setup("test")


def test_training_loader_reshuffles_every_epoch(nbody_root):
    dm = create_datamodule("nbody", root=str(nbody_root), in_len=4, out_len=4, batch_size=2, num_workers=0)
    dm.setup("fit")
    loader = dm.train_dataloader()

    def epoch_order(epoch: int) -> list[int]:
        loader.sampler.set_epoch(epoch)
        return torch.cat([b["meta"]["index"] for b in loader]).tolist()

    first, second = epoch_order(0), epoch_order(1)
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    assert epoch_order(0) == first  # a pure function of (seed, epoch)
    assert torch.cat([b["meta"]["index"] for b in dm.val_dataloader()]).tolist() == [0, 1, 2, 3]


def test_sampler_shards_pad_and_resume():
    shards = [EpochSampler(10, seed=3, num_replicas=4, rank=r) for r in range(4)]
    for s in shards:
        s.set_epoch(2)
    indices = [s.indices() for s in shards]
    assert all(len(i) == len(s) == 3 for i, s in zip(indices, shards))
    assert set().union(*indices) == set(range(10))  # 12 slots: two sequences repeat
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.resume(2, 4)
    sampler.set_epoch(2)  # the trainer sets the same epoch again: the skip stays
    assert list(sampler) == full[4:] and list(sampler) == full  # the skip applies once
    sampler.resume(2, 4)
    sampler.set_epoch(3)  # a later epoch starts from its beginning
    assert len(list(sampler)) == 10
    with pytest.raises(ValueError, match=r"rank 4 is outside"):
        EpochSampler(10, num_replicas=4, rank=4)


def test_evaluation_shards_score_every_sample_exactly_once():
    for length, world in ((5, 2), (10, 4), (8, 4), (3, 3)):
        shards = [
            EpochSampler(length, shuffle=False, num_replicas=world, rank=r, pad=False) for r in range(world)
        ]
        indices = [list(s) for s in shards]
        assert [len(i) for i in indices] == [len(s) for s in shards]
        assert sorted(i for shard in indices for i in shard) == list(range(length))  # once each
    assert [list(EpochSampler(5, shuffle=False, num_replicas=2, rank=r, pad=False)) for r in range(2)] == [
        [0, 2, 4],
        [1, 3],
    ]


def test_evaluation_on_more_processes_than_samples_is_refused(nbody_root):
    from types import SimpleNamespace

    dm = create_datamodule("nbody", root=str(nbody_root), in_len=4, out_len=4, num_workers=0)
    dm.setup("validate")
    n_val = len(dm.datasets["val"])
    dm.trainer = SimpleNamespace(world_size=n_val + 1, global_rank=0)
    with pytest.raises(ValueError, match=rf"val split has {n_val} samples for {n_val + 1} processes"):
        dm.val_dataloader()
    dm.trainer = SimpleNamespace(world_size=3, global_rank=2)
    assert list(dm.val_dataloader().sampler) == list(range(2, n_val, 3))  # no padded repeat


def test_radar_splits_are_consecutive_and_share_training_statistics(tmp_path):
    dm = create_datamodule(
        "radar",
        root=str(tmp_path / "radar.nc"),
        synthesize=True,
        synthetic={"n_times": 130, "size": 16},
        num_workers=2,
    )
    dm.prepare_data()
    dm.setup(None)
    train, val, test = (dm.datasets[s] for s in ("train", "val", "test"))
    assert train.stats == val.stats == test.stats
    assert train.times[-1] < val.times[0] and val.times[-1] < test.times[0]
    contract = dm.contract
    assert (contract["units"], contract["variable"], contract["frame_interval_minutes"]) == (
        "dBR",
        "precip",
        5,
    )
    batch = next(iter(dm.val_dataloader()))
    assert torch.isfinite(batch["inputs"]).all()  # NaN outside the radar domain became the dry floor
