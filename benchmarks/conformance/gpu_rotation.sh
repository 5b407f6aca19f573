#!/usr/bin/env bash
# GPU rotation kernels through the rotation kinds (< ~5 min on one GPU): installs
# fast-hadamard-transform if missing (builds against the local torch + CUDA), then runs
# gpu_rotation.py. Writes $OUT/gpu_rotation.txt.   OUT=/tmp/out bash benchmarks/conformance/gpu_rotation.sh
set -u
OUT=${OUT:-/tmp/torq_gpu_out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD:$PWD/benchmarks/conformance${PYTHONPATH:+:$PYTHONPATH}"
{
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || echo "no nvidia-smi"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  $PY -c "import fast_hadamard_transform" 2>/dev/null \
    || timeout 240 $PY -m pip install -q --no-build-isolation fast-hadamard-transform==1.1.0 \
    || echo "fast-hadamard-transform not installable"
  $PY -c "import hadamard_transform" 2>/dev/null || $PY -m pip install -q hadamard-transform==0.2.0
  timeout 240 $PY benchmarks/conformance/gpu_rotation.py
  echo "exit $?"
} > "$OUT/gpu_rotation.txt" 2>&1
tail -40 "$OUT/gpu_rotation.txt"
