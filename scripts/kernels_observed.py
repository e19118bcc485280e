"""Did the profiler see the kernels of every cell of a check run? The cells of the `check` profile are each
observed after the previous one was captured as a CUDA graph: where the profiler goes blind after captures,
every later cell fails with "saw no GPU kernel", and the grid would be worthless.

    python3 scripts/kernels_observed.py results/cuda-h200-check cuda      # exit 0: go on; 1: stop
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(run_dir: str, device: str) -> int:
    path = Path(run_dir) / "benchmarks.json"
    if not path.is_file():
        print(f"check: no {path}: the check run did not finish")
        return 1
    data = json.loads(path.read_text())
    cells = [b["extra_info"] for b in data["benchmarks"]]
    failed = [f"{c['id']}: {c['reason']}" for c in data.get("attnbench_not_run", []) if c["outcome"] == "failed"]
    blind = [c["id"] for c in cells if device == "cuda" and not c.get("attention_device_kernels")]
    unseen = [c["id"] for c in cells if c.get("attention_kernel") in (None, "none observed")]
    if failed or blind or unseen or not cells:
        print(
            f"check: {len(cells)} cells measured; failed: {failed}; no GPU kernels seen: {blind}; "
            f"no attention kernel seen: {unseen}"
        )
        return 1
    labels = sorted({c["attention_kernel"] for c in cells})
    print(f"check: {len(cells)} cells, each observed after a capture, kernels seen: {labels}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python3 scripts/kernels_observed.py RUN_DIR cpu|cuda", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
