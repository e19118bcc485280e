#!/usr/bin/env bash
# The in-run pairs' validation (analysis/pairs_validation.py): `--profile pairs` once on an idle machine and,
# with --under-load, once more while another process keeps one core busy the whole run (as on a laptop).
# --tag TAG names a further run of its own (pairs-MACHINE-TAG[-under-load]) beside the earlier ones, which
# each page pools with it. Each run folder gets its PAIRS.md. Run from a clean checkout (the runs record its commit).
set -euo pipefail
cd "$(dirname "$0")/.."
tag=""
under_load=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --under-load) under_load=1; shift ;;
        --tag)
            [[ "${2:-}" =~ ^[a-z0-9][a-z0-9-]*$ ]] || { echo "error: --tag ${2:-''} is not accepted; give lower-case letters, digits and dashes" >&2; exit 2; }
            tag="-$2"; shift 2 ;;
        *) echo "error: $1 is not accepted; give --under-load and/or --tag TAG" >&2; exit 2 ;;
    esac
done
slug=$(python -c "from infra.machine import machine_slug; print(machine_slug('cpu'))")
name="pairs-$slug$tag"
if [[ -n "$under_load" ]]; then
    name="$name-under-load"
    python -c "while True: pass" &
    load=$!
    trap 'kill $load' EXIT
fi
python -m bench --device cpu --profile pairs --name "$name" --no-traces --replace
python -m analysis pairs "results/$name"  # a name ending -under-load says so on its page
