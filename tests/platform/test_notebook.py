"""notebooks/quickstart.ipynb executes top to bottom with the tiny config."""
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_notebook_executes():
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    # the kernel is its own process and starts its own local Ray cluster on loopback
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "Human's ancestors" in outputs and "hallucinated: ['Spaceship']" in outputs
    assert "report.html" in outputs
    results = [o["data"]["text/plain"] for c in nb.cells if "KnowCoder.load" in c.source for o in c.get("outputs", [])
               if o.get("output_type") == "execute_result"]
    assert len(results) == 1 and results[0].startswith("TextResult(text='Barack Obama was born in Honolulu.'"), results
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
