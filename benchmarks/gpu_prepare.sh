#!/usr/bin/env bash
# Prepare, on this machine, what a GPU lease needs and cannot fetch (the device machine reaches no
# package registry): the reference package and its pure-Python needs as wheels in .whl/, and the
# reference harness in .gpu-bench/. Both are git-ignored and travel with `carry`.
#   usage: bash benchmarks/gpu_prepare.sh   then, on the device: bash benchmarks/gpu_session.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SHARED="${EARTHCAST_SHARED:-../shared}"
PY="${PYTHON:-.venv/bin/python}"
rm -rf .whl .gpu-bench && mkdir -p .whl .gpu-bench
cp "$SHARED/bench/bench_ref.py" .gpu-bench/
# the device's Python is 3.12 with torch, lightning, einops, h5py, xarray, torchmetrics, … already
# (.library/device/KINDS.md); the reference also needs these (setuptools < 81 for pkg_resources)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 -d .whl "earthformer==0.2.1" "omegaconf==2.3.0" "setuptools==80.9.0"
"$PY" -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==4.9.3"  # published as an sdist only
ls -l .whl .gpu-bench
