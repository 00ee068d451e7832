#!/usr/bin/env bash
# The GPU checks, as one prepared script for a machine with a CUDA device:
#   1. the gpu-marked tests (renderer on CUDA agrees with the CPU);
#   2. the reference device's scores on CUDA against the CPU: largest difference, and decisions
#      at three operating points identical except for ties (benchmarks/gpu_agreement.py);
#   3. inference throughput on CUDA for both architectures (the reference device at 32^3 and the
#      MONAI ResNet at 64^3), and the same on CPU in the same run as the baseline;
#   4. with TRAIN_RESNET_S set: `sandbox train agent=lung_nodule_resnet device=cuda` (the full
#      recipe) under a limit of that many seconds, then, if it finished, a run of `ai_triage` with
#      it on CUDA and the throughput of its trained weights. The bundle is built in
#      $SANDBOX_CACHE_DIR (set it); its card and training log are copied to OUT_DIR.
# Usage: [PYTHON=python3] [TRAIN_RESNET_S=300] bash benchmarks/gpu.sh [OUT_DIR]
#   (PYTHON defaults to the README's install in .venv)
# Each check runs even if an earlier one failed (a GPU machine is lent briefly); the script
# exits non-zero if any did.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp}}"
py="${PYTHON:-.venv/bin/python}"
failed=()
check() { "$@" || failed+=("$*"); }
"$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))" || exit 1
check "$py" -m pytest -q -p no:cacheprovider -m gpu $(grep -rl "mark.gpu" tests)
check "$py" benchmarks/gpu_agreement.py --a cpu --b cuda --exams 3000 --out "$out"
check "$py" benchmarks/inference_throughput.py --device cuda --batch 1024 --batches 8 --out "$out"
check "$py" benchmarks/inference_throughput.py --device cpu --batches 2 --repeats 2 --out "$out"
if [[ -n "${TRAIN_RESNET_S:-}" ]]; then
  start=$(date +%s)
  if timeout "$TRAIN_RESNET_S" "$py" -m sandbox.cli train agent=lung_nodule_resnet device=cuda \
      2>&1 | tee "$out/train_resnet.log"; then
    echo "trained in $(( $(date +%s) - start )) s"
    bundle="${SANDBOX_CACHE_DIR:?set SANDBOX_CACHE_DIR}/agents/lung_nodule_resnet"
    cp "$bundle/docs/README.md" "$out/resnet_card.md"
    cp "$bundle/configs/metadata.json" "$out/resnet_metadata.json"
    check "$py" -m sandbox.cli run policy=ai_triage agent=lung_nodule_resnet runtime.device=cuda \
      cohort.size=5000
    check "$py" benchmarks/inference_throughput.py --agents lung_nodule_resnet --device cuda \
      --batch 1024 --batches 8 --out "$out"
  else
    echo "training stopped after $(( $(date +%s) - start )) s (limit ${TRAIN_RESNET_S} s)"
    failed+=("train")
  fi
fi
if (( ${#failed[@]} )); then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "all GPU checks passed"
