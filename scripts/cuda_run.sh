#!/usr/bin/env bash
# For a machine with a GPU and torch already installed (e.g. a lent device machine): the CUDA
# checks, then the CUDA grid with traces and report, into results/cuda-<gpu>/.
# Copies the run folder to $OUT when that is set. Usage: bash scripts/cuda_run.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'; print(torch.cuda.get_device_name(0), torch.__version__)"
python3 -m pytest -q -p no:cacheprovider tests/test_bench_measure.py tests/test_layer_equivalence.py tests/test_cost_model.py
python3 -m bench --device cuda --grid cuda "$@"
run_dir=$(ls -d results/cuda-* | head -n 1)
if [ -n "${OUT:-}" ]; then
  tar -czf "$OUT/$(basename "$run_dir").tar.gz" "$run_dir"
fi
