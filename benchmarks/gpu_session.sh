#!/usr/bin/env bash
# Everything a GPU lease is for, in one command on the device machine (after gpu_prepare.sh here):
#   run(command="bash benchmarks/gpu_session.sh", carry=[".whl", ".gpu-bench"], timeout_s=600)
# 1. the GPU tests (pytest -m gpu: CUDA vs CPU for every tiny preset, SDPA, dropout, bf16, Inductor,
#    a bf16 Lightning fit); 2. ours vs the reference on the same GPU, bf16 autocast and fp32, every
#    preset (benchmarks/gpu_compare.py); 3. with GPU_COMPILE=1, ours under torch.compile too.
# Results land in $OUT (the device tool brings them back): nvidia-smi.txt, gpu_tests.log,
# gpu_compare_{bf16,fp32[,compile]}.json with their .log files.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-/tmp/earthcast-gpu}"
PY="${PYTHON:-python3}"  # the device's python3 holds its CUDA PyTorch
mkdir -p "$OUT"
"$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="$PWD/src:$PWD:/tmp/site" PYTHONUNBUFFERED=1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee "$OUT/env.txt"

timeout 240 "$PY" -m pytest -m gpu tests/gpu -q -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log"

compare() {  # name, extra arguments
  local name="$1"; shift
  # shellcheck disable=SC2086  # GPU_COMPARE_ARGS: extra options, e.g. "--presets sevir --runs 20"
  timeout 240 "$PY" benchmarks/gpu_compare.py --bench-ref .gpu-bench/bench_ref.py "$@" ${GPU_COMPARE_ARGS:-} \
    > "$OUT/gpu_compare_$name.json" 2> "$OUT/gpu_compare_$name.log"
  echo "gpu_compare $name: exit $?"
}
compare bf16
compare fp32 --fp32
if [ "${GPU_COMPILE:-0}" = 1 ]; then
  compare compile --compile --presets sevir,enso
fi
"$PY" - "$OUT" <<'PY'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("gpu_compare_*.json")):
    try:
        data = json.loads(path.read_text())
    except ValueError:
        print(path.name, "(no result)")
        continue
    for preset, entry in data["presets"].items():
        ours = entry["ours"]["fwdbwd"]
        print(f"{path.stem:22s} {preset:8s} fwd+bwd speed-up {entry.get('fwdbwd_speedup')}  memory "
              f"{entry.get('fwdbwd_memory_ratio')}  ours {ours['median_ms']} ms, "
              f"{ours['fraction_of_matmul_peak']:.1%} of the matmul peak")
PY
