"""Scratch buffers: reused per slot and thread, never shared between slots, bounded in size."""

from __future__ import annotations

import threading

import torch

from earthcast.nn.scratch import MAX_BYTES, scratch


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def test_a_slot_hands_out_its_storage_again_and_slots_never_alias():
    a = scratch((64, 32), torch.float32, "test_a")
    again = scratch((32, 16), torch.float32, "test_a")  # smaller: a view of the same buffer
    other = scratch((64, 32), torch.float32, "test_b")
    assert a.shape == (64, 32) and again.shape == (32, 16) and again.is_contiguous()
    assert _storage(again) == _storage(a)
    assert _storage(other) != _storage(a)
    assert _storage(scratch((64, 32), torch.float64, "test_a")) != _storage(a)  # per dtype


def test_a_larger_request_grows_the_slot():
    small = scratch((10,), torch.float32, "test_grow")
    large = scratch((1000,), torch.float32, "test_grow")
    assert large.numel() == 1000 and large.untyped_storage().nbytes() >= 4000
    assert _storage(scratch((1000,), torch.float32, "test_grow")) == _storage(large)
    assert small.numel() == 10


def test_requests_over_the_cap_and_off_cpu_are_fresh():
    n = MAX_BYTES // 4 + 1
    first, second = scratch((n,), torch.float32, "test_cap"), scratch((n,), torch.float32, "test_cap")
    assert _storage(first) != _storage(second)
    meta = scratch((4, 4), torch.float32, "test_meta", "meta")
    assert meta.device.type == "meta"


def test_threads_get_their_own_buffers():
    here = scratch((128,), torch.float32, "test_thread")
    seen = {}
    worker = threading.Thread(target=lambda: seen.update(t=scratch((128,), torch.float32, "test_thread")))
    worker.start()
    worker.join()
    assert _storage(seen["t"]) != _storage(here)
