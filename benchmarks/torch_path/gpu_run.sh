#!/usr/bin/env bash
# The torch path on one GPU (< ~5 min): the torch MX fake quantizer under the conformance harness
# on CUDA, tiny Llama / Qwen2 / Gemma3 plans exported by the NumPy engine and evaluated with
# --device cuda, and (when PLAN_DIRS / MODEL_DIRS are set, space-separated, same order) real plans
# from `run --export-plan` evaluated with `eval-plan --device cuda`. Writes $OUT/torch_path_gpu.md.
#   OUT=/tmp/out bash benchmarks/torch_path/gpu_run.sh
set -u
OUT=${OUT:-/tmp/torq_gpu_out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  echo "== device"; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || echo "no nvidia-smi"
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)" \
    || $PY -m pip install -q transformers accelerate || echo "transformers missing and not installable"
} > "$OUT/torch_path_gpu_log.txt" 2>&1
ARGS=()
read -r -a P <<< "${PLAN_DIRS:-}"; read -r -a M <<< "${MODEL_DIRS:-}"
for i in "${!P[@]}"; do ARGS+=(--plan "${P[$i]}" --model "${M[$i]}"); done
timeout 280 $PY benchmarks/torch_path/gpu_check.py --device cuda "${ARGS[@]}" > "$OUT/torch_path_gpu.md" 2>> "$OUT/torch_path_gpu_log.txt"
echo "exit $?" >> "$OUT/torch_path_gpu_log.txt"
# the same check through the command line, one line per real plan
for i in "${!P[@]}"; do
  timeout 120 $PY -m torq_ref eval-plan --plan "${P[$i]}" --model "${M[$i]}" --device cuda --out "$OUT/eval-plan-$i.json" \
    >> "$OUT/torch_path_gpu_log.txt" 2>&1; echo "eval-plan $i exit $?" >> "$OUT/torch_path_gpu_log.txt"
done
tail -20 "$OUT/torch_path_gpu_log.txt"
cat "$OUT/torch_path_gpu.md"
