"""notebooks/quickstart: committed without outputs, in sync with its text twin, and it runs.

The run executes the notebook headless on CPU at its ``tiny`` size (synthetic digits, the S2
grid for one epoch on 512 images, then a user-defined Flax model's grid) with nbclient, as CI
does through its end-to-end tier (``pytest -m e2e``); the two checks of the committed files
are the default tier.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
TWIN = ROOT / "notebooks" / "quickstart.py"
nbformat = pytest.importorskip("nbformat")


def test_committed_notebook_carries_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    assert "colab.research.google.com/assets/colab-badge.svg" in nb.cells[0].source


def test_notebook_and_its_text_twin_have_the_same_cells():
    jupytext = pytest.importorskip("jupytext")
    a = nbformat.read(NOTEBOOK, as_version=4)
    b = jupytext.read(TWIN)
    assert [(c.cell_type, c.source) for c in a.cells] == [
        (c.cell_type, c.source) for c in b.cells], (
        "notebooks/quickstart.ipynb and .py differ: run `jupytext --sync notebooks/quickstart.py`")


@pytest.mark.e2e
def test_notebook_runs_headless_at_tiny_size(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    # The kernel must import this checkout (so the install cell installs nothing), write its
    # runs under tmp_path, and train on synthetic digits offline.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("JAXMNIST_NOTEBOOK_SIZE", "tiny")
    monkeypatch.setenv("JAXMNIST_NOTEBOOK_RUNS", str(tmp_path / "runs"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    t0 = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    print(f"\nnotebook (tiny, CPU) ran in {time.perf_counter() - t0:.0f} s")
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.outputs)
    assert "jaxmnist already installed" in text and "backend: cpu" in text
    assert "predicts" in text  # the best member of the user's own grid answered
    tables = sum("text/html" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.outputs)
    assert tables >= 3  # run.points(), run.table(), own.points() as DataFrames
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.outputs)
    assert images >= 3  # heatmap, curves, the own model's curves
    assert (tmp_path / "runs" / "s2-notebook-tiny" / "results.json").is_file()
    assert (tmp_path / "runs" / "own-model-tiny" / "results.json").is_file()
