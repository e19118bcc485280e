#!/usr/bin/env bash
# For a machine with a GPU and torch already installed (e.g. a lent device machine): the CUDA checks,
# the GPU's auto-kernel table, the CUDA grid with traces, do_bench's cross-check of a sample of its
# device times, and the report, into results/cuda-<gpu>/. Copies what it wrote to $OUT when that is set.
# Usage: bash scripts/cuda_run.sh [extra arguments for python -m bench]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'; print(torch.cuda.get_device_name(0), torch.__version__)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_bench_measure.py tests/test_layer_equivalence.py \
  tests/test_cost_model.py tests/test_memory_model.py tests/test_kernel_choice.py
python3 -m bench.autotune --device cuda --dtypes bfloat16 --passes 2
python3 -m bench --device cuda --grid cuda --no-report "$@"
run_dir=$(ls -d results/cuda-* | head -n 1)
python3 -m bench.do_bench_check "$run_dir" || echo "do_bench cross-check did not run (is triton installed?)"
python3 -m analysis report "$run_dir"
if [ -n "${OUT:-}" ]; then
  tar -czf "$OUT/cuda-results.tar.gz" "$run_dir" model/kernel_table.json
fi
