"""examples/quickstart.ipynb runs top to bottom, on the tiny BERT preset.

The notebook reads its preset from `KT_NOTEBOOK_PRESET` (the offline MiniLM
when unset); here it gets the tiny local preset and a small sample, and runs
in a Jupyter kernel of this very interpreter (a kernel spec written to a
temporary `JUPYTER_PATH`, so a `python3` kernel installed elsewhere on the
machine cannot be picked up instead).
"""

import json
import pathlib
import sys

import pytest

nbclient = pytest.importorskip("nbclient", reason="pip install -r requirements-dev.txt (nbclient)")
nbformat = pytest.importorskip("nbformat", reason="pip install -r requirements-dev.txt (nbformat)")
pytest.importorskip("ipykernel", reason="pip install -r requirements-dev.txt (ipykernel)")

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "examples" / "quickstart.ipynb"
KERNEL = "keras-transfer-test"


def test_quickstart_notebook_runs_on_a_tiny_preset(bert_preset, tmp_path, monkeypatch):
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "keras_transfer tests",
        "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("KT_NOTEBOOK_PRESET", bert_preset)
    monkeypatch.setenv("KT_NOTEBOOK_EXAMPLES", "24")
    monkeypatch.setenv("KT_NOTEBOOK_SEQUENCE_LENGTH", "32")
    monkeypatch.setenv("KT_NOTEBOOK_EPOCHS", "2")
    monkeypatch.setenv("KT_NOTEBOOK_LR_STEPS", "8")
    monkeypatch.setenv("MPLBACKEND", "agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert "KT_NOTEBOOK_PRESET" in notebook.cells[1].source  # the first code cell reads it

    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name=KERNEL, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error

    outputs = {
        i: "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", []))
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
    }
    text = "\n".join(outputs.values())
    assert bert_preset in text
    assert "Trains:" in text and "Frozen:" in text  # summary() says what is frozen
    assert "LRFinderResult(" in text and "steepest descent" in text
    assert "blocks 0-1 of 0-1 train" in text  # unfrozen top 2 of the tiny model's 2 blocks
    assert "'accuracy'" in text
    images = [
        o for cell in notebook.cells if cell.cell_type == "code"
        for o in cell.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert len(images) >= 2  # the LR finder's plot and the training curves
    assert (tmp_path / "quickstart.keras").is_file()
