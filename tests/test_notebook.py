"""The quick-start notebook executes from top to bottom (so it can never rot)."""

import re
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_executes_and_shows_its_figures(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    printed = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    assert "LDAM-DRW" in printed and "balanced error" in printed
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4  # two per-class error charts, two reliability diagrams


def test_the_shipped_notebook_has_its_outputs_and_the_readme_links_it():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)  # executed, in order
    outputs = [o for cell in code for o in cell.outputs]
    printed = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    assert "LDAM-DRW" in printed and "balanced error" in printed
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 4
    assert not [o for o in outputs if o.get("output_type") == "error"]
    root = NOTEBOOK.parents[1]
    assert "(notebooks/quickstart.ipynb)" in (root / "README.md").read_text()
    dev = re.search(r"^dev = \[(.*?)\]$", (root / "pyproject.toml").read_text(), re.S | re.M)
    assert {"jupyter", "nbconvert"} <= set(re.findall(r'"([\w-]+)', dev.group(1)))
