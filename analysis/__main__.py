"""python -m analysis report RESULTS_DIR [--positional DIR]: figures and REPORT.md for one run;
python -m analysis table RESULTS_DIR... --out CSV: the cells of several runs in one tidy table;
python -m analysis index RESULTS: the index of all runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.errors import AnalysisError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis")
    sub = p.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="write RESULTS_DIR/REPORT.md and RESULTS_DIR/figures/")
    report.add_argument("run_dir", type=Path, metavar="RESULTS_DIR")
    report.add_argument(
        "--positional",
        type=Path,
        default=None,
        help="positional experiment folder (default: RESULTS_DIR/../positional)",
    )
    table = sub.add_parser("table", help="one tidy CSV of the cells of several runs (e.g. CPU and CUDA)")
    table.add_argument("run_dirs", type=Path, nargs="+", metavar="RESULTS_DIR")
    table.add_argument("--out", type=Path, required=True, help="CSV to write")
    index = sub.add_parser("index", help="write RESULTS/README.md linking every run's report")
    index.add_argument("results", type=Path, metavar="RESULTS")
    args = p.parse_args(argv)
    from analysis.report import check_run_dir, write_index, write_report, write_table  # heavy imports after parsing

    try:
        if args.command == "index":
            out = write_index(args.results)
        elif args.command == "table":
            out = write_table(args.run_dirs, args.out)
        else:
            check_run_dir(args.run_dir)
            out = write_report(args.run_dir, args.positional)
            write_index(args.run_dir.parent)
    except AnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
