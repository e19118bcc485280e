"""analysis/transformer.ipynb builds the encoder piece by piece, checking each against torch, trains the
small language model, measures cells with the suite, and runs top to bottom."""

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end to end: real runs in subprocesses (the quick tier leaves it out)

NOTEBOOK = Path(__file__).resolve().parents[1] / "analysis" / "transformer.ipynb"


def test_transformer_notebook_runs_top_to_bottom():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    old = os.environ.get("ATTNBENCH_NOTEBOOK_TRAIN_S")
    os.environ["ATTNBENCH_NOTEBOOK_TRAIN_S"] = "15"  # the notebook's minute of training, shortened for CI
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
        ).execute()
    finally:
        os.environ.pop("ATTNBENCH_NOTEBOOK_TRAIN_S") if old is None else os.environ.__setitem__(
            "ATTNBENCH_NOTEBOOK_TRAIN_S", old
        )
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    for checked in (
        "equal to F.scaled_dot_product_attention",
        "equal to nn.MultiheadAttention",
        "norm_first=False: output and input gradient equal",
        "depends only on the offset",
        "bits/char on held-out text",
        "sample: Return the",
        "The whole report: results/cpu-",
    ):
        assert checked in text, checked
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1
