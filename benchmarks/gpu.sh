#!/usr/bin/env bash
# The GPU checks, as one prepared script for a machine with a CUDA device:
#   1. the gpu-marked tests (renderer on CUDA agrees with the CPU);
#   2. the reference device's scores on CUDA against the CPU: largest difference, and decisions
#      at three operating points identical except for ties (benchmarks/gpu_agreement.py);
#   3. inference throughput on CUDA for both architectures (the reference device at 32^3 and the
#      MONAI ResNet at 64^3), and the same on CPU in the same run as the baseline.
# Usage: bash benchmarks/gpu.sh [OUT_DIR]   (expects the README's install in .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp}}"
.venv/bin/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
.venv/bin/python -m pytest -q -m gpu
.venv/bin/python benchmarks/gpu_agreement.py --a cpu --b cuda --exams 3000 --out "$out"
.venv/bin/python benchmarks/inference_throughput.py --device cuda --batch 1024 --batches 8 --out "$out"
.venv/bin/python benchmarks/inference_throughput.py --device cpu --batches 2 --repeats 2 --out "$out"
