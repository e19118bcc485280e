"""python -m analysis COMMAND:
  report RESULTS_DIR [--positional DIR]   figures and REPORT.md for one run
  compare BASE NEW [--fail-on ...]        ratios with intervals between two runs; compare.md; exit 1 on a
                                          regression, 3 where an interval is too wide to decide the gate
  merge OUT SHARD_DIR...                  shards of one grid into one run folder (then: report OUT)
  positional DIR                          summary.md of the positional-encoding experiment
  extrapolation DIR                       summary.md of the language-model extrapolation experiment
  noise DIR                               NOISE.md of a noise-floor experiment (python -m bench.noise_floor)
  table RESULTS_DIR... --out CSV          the cells of several runs in one tidy table
  index RESULTS                           the index of all runs
  replicate RUN_A RUN_B --out DIR         REPLICATE.md: does a second run agree with the first's intervals?
                                          exit 1 where under 90% of shared ratios agree at 95%, or words contradict
Bad input ends with a one-line error and exit 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.errors import AnalysisError
from infra.files import OutputError, is_numbered_run, writable_file, writable_folder
from infra.run_lock import FolderBusy, folder_lock


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m analysis",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = p.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="write RESULTS_DIR/REPORT.md and RESULTS_DIR/figures/")
    report.add_argument("run_dir", type=Path, metavar="RESULTS_DIR")
    report.add_argument(
        "--positional",
        type=Path,
        default=None,
        help="positional experiment folder (default: RESULTS_DIR/../positional)",
    )
    compare = sub.add_parser("compare", help="compare two runs (folders or benchmark JSON files)")
    compare.add_argument("base", type=Path, metavar="BASE")
    compare.add_argument("new", type=Path, metavar="NEW")
    compare.add_argument(
        "--fail-on",
        default=None,
        metavar="METRIC:PCT,...",
        help="exit 1 when a flagged regression exceeds a threshold, e.g. time:5%%,memory:1%%,flops:0%%",
    )
    compare.add_argument(
        "--min-change",
        default=None,
        metavar="METRIC:PCT,...",
        help="smallest change flagged (default time:5%%,device_time:5%%,mfu:5%%; memory, flops: any)",
    )
    compare.add_argument(
        "--noise-floor",
        type=Path,
        default=None,
        metavar="PATH",
        help="noise_floor.json of this machine (python -m bench.noise_floor): widens the intervals "
        "by the run-to-run spread it measured",
    )
    compare.add_argument("--out", type=Path, default=None, help="folder for compare.md (default: NEW's folder)")
    merge = sub.add_parser("merge", help="merge the shard folders of one grid into OUT")
    merge.add_argument("out", type=Path, metavar="OUT")
    merge.add_argument("shards", type=Path, nargs="+", metavar="SHARD_DIR")
    positional = sub.add_parser("positional", help="write DIR/summary.md of the positional experiment")
    positional.add_argument("folder", type=Path, metavar="DIR")
    extrapolation = sub.add_parser("extrapolation", help="write DIR/summary.md of the language-model experiment")
    extrapolation.add_argument("folder", type=Path, metavar="DIR")
    noise = sub.add_parser("noise", help="write DIR/NOISE.md: compare's false-alarm rate (A/A) and an A/B")
    noise.add_argument("folder", type=Path, metavar="DIR")
    pairs = sub.add_parser("pairs", help="write RESULTS_DIR/PAIRS.md: the in-run pairs' A/A and known slowdown")
    pairs.add_argument("run_dir", type=Path, metavar="RESULTS_DIR")
    table = sub.add_parser("table", help="one tidy CSV of the cells of several runs (e.g. CPU and CUDA)")
    table.add_argument("run_dirs", type=Path, nargs="+", metavar="RESULTS_DIR")
    table.add_argument("--out", type=Path, required=True, help="CSV to write")
    replicate = sub.add_parser("replicate", help="write DIR/REPLICATE.md: two runs' comparisons, agreement at 95%%")
    replicate.add_argument("run_a", type=Path, metavar="RUN_A")
    replicate.add_argument("run_b", type=Path, metavar="RUN_B")
    replicate.add_argument("--out", type=Path, required=True, help="folder for REPLICATE.md and replicate.csv")
    index = sub.add_parser("index", help="write RESULTS/README.md linking every run's report")
    index.add_argument("results", type=Path, metavar="RESULTS")
    return p


def run(args: argparse.Namespace) -> int:
    # heavy imports (pandas, seaborn, torch) after parsing, so --help and usage errors are instant
    if args.command == "compare":
        from analysis.compare import compare_runs, exit_code, parse_thresholds, read_noise_floor
        from analysis.compare_report import summary_lines, write_compare

        floor = read_noise_floor(args.noise_floor) if args.noise_floor else None
        out_dir = args.out or (args.new if args.new.is_dir() else args.new.parent)
        writable_folder(out_dir, "--out" if args.out else "compare's folder (NEW's; --out DIR for another)")
        comparison = compare_runs(
            args.base,
            args.new,
            parse_thresholds(args.fail_on, "--fail-on"),
            parse_thresholds(args.min_change, "--min-change"),
            floor,
        )
        for warning in comparison.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        path = write_compare(comparison, args.base, args.new, out_dir)
        print("\n".join(summary_lines(comparison)))
        for failure in comparison.failures:
            print(f"gate: {failure}", file=sys.stderr)
        for line in comparison.undecided:
            print(f"gate undecided: {line}", file=sys.stderr)
        print(f"wrote {path}")
        return exit_code(comparison)
    from analysis.report import check_run_dir, update_index, write_index, write_report, write_table

    if args.command == "index":
        out = write_index(args.results)
    elif args.command == "replicate":
        from analysis.replicate import PAGE, replicate

        for run_dir in (args.run_a, args.run_b):
            check_run_dir(run_dir)
        writable_folder(args.out, "--out")
        both, replicated = replicate(args.run_a, args.run_b, args.out)
        agree = int(both["agree"].sum()) if len(both) else 0
        print(f"{agree} of {len(both)} shared ratios agree at 95%; wrote {args.out / PAGE}")
        return 0 if replicated else 1
    elif args.command == "table":
        writable_file(args.out, "--out")
        out = write_table(args.run_dirs, args.out)
    elif args.command == "positional":
        from analysis.positional_summary import write_summary

        out = write_summary(args.folder)
    elif args.command == "extrapolation":
        from analysis.extrapolation_summary import write_summary as write_extrapolation

        out = write_extrapolation(args.folder)
    elif args.command == "noise":
        from analysis.noise import write_noise

        out = write_noise(args.folder)
    elif args.command == "pairs":
        from analysis.pairs_validation import write_pairs_validation

        check_run_dir(args.run_dir)
        out = write_pairs_validation(args.run_dir)
    elif args.command == "merge":
        from analysis.merge import merge_shards

        out = merge_shards(args.shards, args.out)
    else:
        check_run_dir(args.run_dir)
        writable_folder(args.run_dir, "RESULTS_DIR")
        with folder_lock(args.run_dir, "report"):
            out = write_report(args.run_dir, args.positional)
        if not is_numbered_run(args.run_dir):  # a numbered run leaves the (committed) index as it was
            update_index(args.run_dir.parent)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except (AnalysisError, OutputError, FolderBusy) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except PermissionError as err:  # an output folder one cannot write into
        print(f"error: cannot write {err.filename} ({err.strerror}); give a folder you can write to", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a file-size limit, an I/O error: one line naming the file
        what = err.filename or "a file"
        print(f"error: {what}: {err.strerror or type(err).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
