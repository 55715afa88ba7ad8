"""The CPU allocator policy: freed memory stays in the process (and is reused) only when asked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from earthcast.training import load_config
from earthcast.training.runner import CpuAllocatorPolicy, build_trainer
from earthcast.utils.allocator import REUSE_ENVIRONMENT, _glibc, keep_freed_memory

glibc_only = pytest.mark.skipif(_glibc() is None, reason="mallopt is a glibc feature")

# allocate, touch and free 256 MB; report resident memory (MB) before and after the free
_PROBE = """
import json, sys, torch
from earthcast.utils.allocator import keep_freed_memory
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) // 1024 for l in f if l.startswith("VmRSS:"))
applied = keep_freed_memory() if sys.argv[1] == "reuse" else False
block = torch.ones(64 * 2**20)
held = rss()
del block
freed = rss()
again = torch.ones(60 * 2**20)  # a reused block needs no new pages (a bit smaller: alignment slack)
print(json.dumps({"applied": applied, "held": held, "freed": freed, "again": rss()}))
"""


def _probe(policy: str, env: dict | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, policy], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_reuse_keeps_freed_blocks_and_the_system_allocator_returns_them():
    system, reuse = _probe("system"), _probe("reuse")
    assert not system["applied"] and reuse["applied"]
    assert system["held"] - system["freed"] > 200  # the 256 MB mapping went back to the system
    assert reuse["held"] - reuse["freed"] < 20  # ... and stayed here
    assert reuse["again"] - reuse["freed"] < 20  # ... to be handed out again


@glibc_only
def test_environment_form_is_the_same_policy_for_child_processes():
    import os

    child = _probe("system", env={**os.environ, **REUSE_ENVIRONMENT})
    assert child["held"] - child["freed"] < 20


def test_trainer_carries_the_policy_and_rejects_unknown_ones(tmp_path):
    config = load_config("nbody")
    assert config.trainer.cpu_allocator == "reuse"
    trainer = build_trainer(config.trainer, tmp_path, system=None, micro_batch=1, evaluating=True)
    policies = [c for c in trainer.callbacks if isinstance(c, CpuAllocatorPolicy)]
    assert len(policies) == 1 and policies[0].policy == "reuse"
    with pytest.raises(ValueError, match="cpu_allocator='jemalloc'"):
        CpuAllocatorPolicy("jemalloc")
    with pytest.raises(ValueError, match="cpu_allocator"):
        load_config("nbody", ["trainer.cpu_allocator=jemalloc"])


@glibc_only
def test_policy_applies_on_cpu_only_when_reuse(tmp_path):
    config = load_config("nbody", ["trainer.accelerator=cpu"])
    trainer = build_trainer(config.trainer, tmp_path, system=None, micro_batch=1, evaluating=True)
    system = CpuAllocatorPolicy("system")
    system.setup(trainer, None, "fit")
    assert not system.applied
    reuse = CpuAllocatorPolicy("reuse")
    reuse.setup(trainer, None, "fit")
    assert reuse.applied == keep_freed_memory()  # idempotent: applying twice is harmless
