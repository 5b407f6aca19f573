#!/usr/bin/env bash
# One short GPU conformance run (< ~9 min): Triton tl.dot_scaled and JAX block-scaled quantize
# on CUDA, then gpu_field.py (torch CUDA casts, triton_kernels, FlashInfer, MLX CUDA) through the torq-ref harness. Writes $OUT/gpu_conformance.md (markdown table rows),
# $OUT/gpu_details.md (reproductions of failing cases) and $OUT/gpu_log.txt.
#   OUT=/tmp/out bash benchmarks/conformance/gpu_run.sh
set -u
OUT=${OUT:-/tmp/torq_gpu_out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD:$PWD/benchmarks/conformance${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET
{
  echo "== device"; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || echo "no nvidia-smi"
  $PY -c "import numpy, ml_dtypes; print('numpy', numpy.__version__, 'ml_dtypes', ml_dtypes.__version__)" \
    || $PY -m pip install -q numpy ml_dtypes || echo "numpy/ml_dtypes missing and not installable"
  $PY -c "import triton, torch; print('triton', triton.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    || $PY -m pip install -q triton || echo "triton missing and not installable"
  $PY -c "import jax; print('jax', jax.__version__, jax.devices())" \
    || $PY -m pip install -q "jax[cuda12]" || echo "jax[cuda12] missing and not installable"
} > "$OUT/gpu_log.txt" 2>&1
DEV=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
timeout 270 $PY benchmarks/conformance/run_table.py --device "${DEV:-unknown GPU} (CUDA)" \
  --only "JAX,Triton" --out "$OUT/gpu_conformance.md" --details "$OUT/gpu_details.md" >> "$OUT/gpu_log.txt" 2>&1
echo "exit $?" >> "$OUT/gpu_log.txt"
# the implementations added later (gpu_field.py): torch CUDA casts, triton_kernels, FlashInfer, MLX CUDA
timeout 240 $PY benchmarks/conformance/gpu_field.py --device "${DEV:-unknown GPU} (CUDA)" \
  >> "$OUT/gpu_conformance.md" 2>> "$OUT/gpu_log.txt"
echo "gpu_field exit $?" >> "$OUT/gpu_log.txt"
cat "$OUT/gpu_log.txt" | grep -v "^W1" | tail -30
cat "$OUT/gpu_conformance.md" 2>/dev/null
