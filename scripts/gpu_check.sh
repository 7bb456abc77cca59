#!/usr/bin/env bash
# GPU check of the CUDA kernels, for a machine with an NVIDIA GPU, CuPy and (optionally)
# PyTorch and compute-sanitizer already installed. Typically about 5 minutes on an H200; the
# steps' time limits add up to 8.5 minutes.
#
#   1. install the project (editable, no dependencies, offline)
#   2. pytest -k "cuda or gpu": the kernels against the reference on the GPU, compile checks
#   3. compute-sanitizer memcheck, then racecheck, on the GPU kernel tests (CuPy's memory pool
#      off, so every array is its own allocation and an access past it is caught)
#   4. minitorch-resnext bench conv --device cuda (against cuDNN, TF32 off), run as
#      python3 -m minitorch_resnext so that it does not depend on PATH
#   5. a table: each step's status, then the benchmark's speedups and targets
#
# Each step has a time limit, so the script always reaches its table. Exit status: 0 when
# every step passed. Logs and the bench JSON go to $GPU_CHECK_OUT (default
# bench-results/gpu-check, which git ignores).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${GPU_CHECK_OUT:-bench-results/gpu-check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
declare -a STEPS=()
FAILED=0

# step NAME LIMIT_S COMMAND...: run with a time limit, log to $OUT/NAME.log, record the result
step() {
  local name=$1 limit=$2 start rc status
  shift 2
  echo "=== $name (limit ${limit}s): $*"
  start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) status=ok ;;
    124|137) status="TIMEOUT" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  [ "$rc" -eq 0 ] || FAILED=1
  STEPS+=("$(printf '%-12s %-18s %5ss' "$name" "$status" "$(( $(date +%s) - start ))")")
}

# pytest in a process whose CuPy allocates every array with its own cudaMalloc
NO_POOL='import sys, cupy, pytest; cupy.cuda.set_allocator(None); sys.exit(pytest.main(sys.argv[1:]))'
GPU_TESTS=(-q -x -p no:cacheprovider tests/test_cuda_compile.py)

step install 60 python3 -m pip install -q --no-deps --no-build-isolation --no-index -e .
step pytest 180 python3 -m pytest -q tests -k "cuda or gpu"

if command -v compute-sanitizer >/dev/null; then
  step memcheck 90 compute-sanitizer --tool memcheck --error-exitcode 1 --print-limit 20 \
    python3 -c "$NO_POOL" "${GPU_TESTS[@]}" -k "gpu_kernels_match and float32"
  step racecheck 60 compute-sanitizer --tool racecheck --racecheck-report hazard \
    --error-exitcode 1 --print-limit 20 \
    python3 -c "$NO_POOL" "${GPU_TESTS[@]}" -k "gpu_kernels_match and float32 and (k3x3 or k1x3)"
else
  STEPS+=("$(printf '%-12s %-18s' sanitizers 'SKIPPED (no compute-sanitizer)')")
fi

step bench 120 python3 -m minitorch_resnext bench conv --device cuda --repeats 20 --out "$OUT"

echo
echo "=== gpu_check summary"
printf '%s\n' "${STEPS[@]}"
python3 - "$OUT/conv-cuda.json" <<'EOF'
import json, sys
try:
    data = json.load(open(sys.argv[1]))
except OSError:
    sys.exit("no benchmark results")
algorithm = {s["name"]: s["algorithm"] for s in data["shapes"]}
print(f"\n{'shape':<18} {'pass':<12} {'algorithm':<9} {'vs cuDNN':>9} {'% roof':>7}  target")
for t in data["targets"]:
    speedup = "-" if t["speedup"] is None else f"{t['speedup']:.2f}x"
    print(f"{t['shape']:<18} {t['pass']:<12} {algorithm[t['shape']]:<9} {speedup:>9} "
          f"{100 * t['roofline_fraction']:>6.1f}%  {t['target']}: {t['status']}")
EOF
exit "$FAILED"
