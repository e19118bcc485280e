"""REPORT.md for one results folder, in one place: the context every section reads (context.py), the sections
(one function `section(ctx) -> lines` each, in sections.py, scaling.py, targets.py, axes.py, breakdown.py,
reference_layers.py, page.py), and writer.py, which lists them in order and writes the report, the results
index and the cross-run table."""

from analysis.report.writer import check_run_dir, update_index, write_index, write_report, write_table

__all__ = ["check_run_dir", "update_index", "write_index", "write_report", "write_table"]
