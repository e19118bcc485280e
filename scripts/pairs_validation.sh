#!/usr/bin/env bash
# The in-run pairs' validation (analysis/pairs_validation.py): `--profile pairs` once on an idle machine and,
# with --under-load, once more while another process keeps one core busy the whole run (as on a laptop).
# Each run folder gets its PAIRS.md. Run from a clean checkout (the runs record its commit).
set -euo pipefail
cd "$(dirname "$0")/.."
slug=$(python -c "from infra.machine import machine_slug; print(machine_slug('cpu'))")
name="pairs-$slug"
if [[ "${1:-}" == "--under-load" ]]; then
    name="$name-under-load"
    python -c "while True: pass" &
    load=$!
    trap 'kill $load' EXIT
fi
python -m bench --device cpu --profile pairs --name "$name" --no-traces --replace
python -m analysis pairs "results/$name"  # a name ending -under-load says so on its page
