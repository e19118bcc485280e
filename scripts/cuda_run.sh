#!/usr/bin/env bash
# The GPU run, sized for a lent machine (10 minutes a command, about 15 in all) where torch is installed:
#   part 1 (default): a 3-cell check that kernels are still observed after CUDA-graph captures (it stops
#     the run early if not), the CUDA grid sized by the cost model to fit, its report, do_bench's
#     cross-check of a sample of device times, the CUDA tests and the GPU's auto-kernel table;
#   part 2: what did not fit: the NCCL data-parallel run and the float32 rows of the auto table.
# Every step is bounded by `timeout -s INT`, so an interrupted pytest still writes its partial JSON, and on
# any exit whatever exists is packed into $OUT/cuda-run.tar.gz (results, table, logs, steps.txt).
#
# Usage: bash scripts/cuda_run.sh [--part 1|2] [--cpu-dry-run]
#   --cpu-dry-run: the same plumbing on a CPU with tiny grids and short limits (CI runs it).
# Limits (seconds) can be set from the environment: CUDA_RUN_CHECK_S, CUDA_RUN_GRID_S, CUDA_RUN_GRID_MIN
# (the grid's predicted minutes), CUDA_RUN_GRID_ARGS (extra options for the grid), CUDA_RUN_REPORT_S, CUDA_RUN_DOBENCH_S, CUDA_RUN_TESTS_S, CUDA_RUN_TUNE_S,
# CUDA_RUN_DDP_S; CUDA_RUN_RESULTS is the results folder (default results).
set -u
cd "$(dirname "$0")/.." || exit 2
part=1
device=cuda
while [ $# -gt 0 ]; do
  case "$1" in
    --part) part=${2:-}; shift 2 ;;
    --cpu-dry-run) device=cpu; shift ;;
    *) echo "error: unknown argument '$1'; accepted: --part 1|2, --cpu-dry-run" >&2; exit 2 ;;
  esac
done
case "$part" in 1|2) ;; *) echo "error: --part '$part' is not accepted; choose 1 or 2" >&2; exit 2 ;; esac
if ! python3 -c "import torch, psutil, pytest_benchmark" 2>/dev/null; then
  echo "error: this python3 lacks torch or attnbench's dependencies; run the script where they are installed (pip install -e .)" >&2
  exit 2
fi
if [ "$device" = cuda ] && ! python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: no CUDA device here: scripts/cuda_run.sh runs the GPU grid (--cpu-dry-run tries its plumbing on a CPU)" >&2
  exit 2
fi

OUT=${OUT:-$PWD/cuda-run-out}
mkdir -p "$OUT/logs"
: > "$OUT/steps.txt"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
results=${CUDA_RUN_RESULTS:-results}
name=$(python3 -c "from infra.machine import machine_slug; print(machine_slug('$device'))") || exit 2
run_dir="$results/$name"

if [ "$device" = cuda ]; then
  grid=cuda; check_set=(); table=results/kernel_table.json
  tests=(tests/test_cuda.py tests/test_bench_measure.py tests/test_layer_equivalence.py tests/test_cost_model.py
         tests/test_memory_model.py tests/test_kernel_choice.py)
  tune1=(--dtypes bfloat16 --passes 2); tune2=(--dtypes bfloat16 float32 --passes 2)
  ddp=(--device cuda --nproc-per-node 1 --passes 2)
  check_s=60 grid_s=240 grid_min=3 report_s=60 dobench_s=75 tests_s=90 tune_s=75 ddp_s=150
else  # the dry run: tiny grids, a table of its own, the CUDA-only tests (they skip)
  grid=quick; check_set=(--set device=cpu --set dtype=float32 --set seq_len=64,128,256); table=$OUT/kernel_table.json
  tests=(tests/test_cuda.py)
  tune1=(--dtypes float32 --lengths 64 --passes 1 --budget-s 0.005); tune2=("${tune1[@]}")
  ddp=(--device cpu --nproc-per-node 1 --passes 1 --rounds 2 --seq-len 64)
  check_s=90 grid_s=150 grid_min=0 report_s=120 dobench_s=30 tests_s=90 tune_s=60 ddp_s=150
fi
check_s=${CUDA_RUN_CHECK_S:-$check_s}; grid_s=${CUDA_RUN_GRID_S:-$grid_s}; grid_min=${CUDA_RUN_GRID_MIN:-$grid_min}
report_s=${CUDA_RUN_REPORT_S:-$report_s}; dobench_s=${CUDA_RUN_DOBENCH_S:-$dobench_s}
tests_s=${CUDA_RUN_TESTS_S:-$tests_s}; tune_s=${CUDA_RUN_TUNE_S:-$tune_s}; ddp_s=${CUDA_RUN_DDP_S:-$ddp_s}

pack() {
  local items=("$OUT/logs" "$OUT/steps.txt")
  for path in "$run_dir" "$run_dir-check" "$run_dir-interrupted" "$results/ddp-$name" "$table"; do
    [ -e "$path" ] && items+=("$path")
  done
  tar -czf "$OUT/cuda-run.tar.gz" "${items[@]}" 2>/dev/null
  echo "packed: $OUT/cuda-run.tar.gz"
}
trap pack EXIT
trap 'exit 130' INT TERM  # stopped from outside: exit through the EXIT trap, which packs what exists

# step NAME SECONDS COMMAND...: bounded by SIGINT (then KILL 20 s later), logged, its exit and time recorded
step() {
  local label=$1 limit=$2 start=$SECONDS rc
  shift 2
  timeout -s INT -k 20 "$limit" "$@" > "$OUT/logs/$label.log" 2>&1
  rc=$?
  printf '%-9s exit %3d  %4d s  (limit %d s)\n' "$label" "$rc" $((SECONDS - start)) "$limit" | tee -a "$OUT/steps.txt"
  tail -n 2 "$OUT/logs/$label.log"
  return $rc
}

python3 -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(),
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$OUT/logs/facts.log"
if [ "$device" = cuda ] && ! python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "error: no CUDA device visible to torch" >&2
  exit 2
fi

if [ "$part" = 1 ]; then
  rm -rf "$run_dir-check"
  step check "$check_s" python3 -m bench --device "$device" --profile check "${check_set[@]}" --results "$results" \
    --name "$name-check" --no-report -q
  python3 scripts/kernels_observed.py "$run_dir-check" "$device" > "$OUT/logs/kernels_observed.log" 2>&1
  observed=$?
  tee -a "$OUT/steps.txt" < "$OUT/logs/kernels_observed.log"
  if [ "$observed" -ne 0 ]; then
    echo "stop: the check failed (above); nothing else was run" | tee -a "$OUT/steps.txt"
    exit 3
  fi
  run_id="cuda-run-$(date +%Y%m%dT%H%M%S)-$$"  # names this run's partial files: an older run's are never taken
  # shellcheck disable=SC2086  # CUDA_RUN_GRID_ARGS: extra options for the grid, split as words (the tests use it)
  step grid "$grid_s" python3 -m bench --device "$device" --profile "$grid" --name "$name" --results "$results" \
    --no-report --passes 2 --time-budget-min "$grid_min" --run-id "$run_id" --replace ${CUDA_RUN_GRID_ARGS:-}
  if [ -f "$run_dir/interrupted-$run_id/benchmarks.json" ]; then  # interrupted: report what it measured, apart
    rm -rf "$run_dir-interrupted" && cp -r "$run_dir/interrupted-$run_id" "$run_dir-interrupted"
    step report "$report_s" python3 -m analysis report "$run_dir-interrupted"
  elif [ -f "$run_dir/benchmarks.json" ]; then
    if [ "$device" = cuda ]; then
      step do_bench "$dobench_s" python3 -m bench.do_bench_check "$run_dir" --sample 10
    fi
    step report "$report_s" python3 -m analysis report "$run_dir"
  fi
  step tests "$tests_s" python3 -m pytest -q -p no:cacheprovider "${tests[@]}" --junitxml="$OUT/logs/tests.xml"
  step autotune "$tune_s" python3 -m bench.autotune --device "$device" "${tune1[@]}" --table "$table"
else
  step ddp "$ddp_s" python3 -m bench.distributed "${ddp[@]}" --results "$results"
  step autotune "$tune_s" python3 -m bench.autotune --device "$device" "${tune2[@]}" --table "$table"
fi
exit 0
