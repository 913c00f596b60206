"""The notebooks in examples/notebooks/ run top to bottom in a headless Jupyter kernel (nbclient
with ipykernel, as a user's Jupyter would), against the bundled demo shop on 127.0.0.1. Each
notebook checks its own results with asserts; a failing cell fails the test with its output."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted(
    (Path(__file__).resolve().parent.parent / "examples" / "notebooks").glob("*.ipynb")
)


def _outputs_text(notebook: object) -> str:
    texts = []
    for cell in notebook.cells:  # type: ignore[attr-defined]
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.extend(str(v) for v in output.get("data", {}).values())
    return "\n".join(texts)


def _output_types(notebook: object) -> set[str]:
    return {
        kind
        for cell in notebook.cells  # type: ignore[attr-defined]
        for output in cell.get("outputs", [])
        for kind in output.get("data", {})
    }


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_a_headless_kernel(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    # jupyter_core warns (DeprecationWarning) unless told to use the platform directories.
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("SCRAPERV4_QUEUE_URL", redis_url)  # the fleet notebook's queue
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure
    text = _outputs_text(notebook)
    assert "Traceback" not in text
    if path.name == "quickstart.ipynb":
        assert "done: 24 items" in text, text[-2000:]
        assert "<table>" in text, "the crawl summary, stats and job list show as tables"
        assert "image/png" in _output_types(notebook), "the throughput plot is drawn"
        # tqdm.auto: in a kernel with ipywidgets the crawl's progress is a live widget.
        assert "application/vnd.jupyter.widget-view+json" in _output_types(notebook)
    else:
        assert "again: 0 new, 1 already queued" in text, text[-2000:]
        assert "http_status" in text


def test_there_are_notebooks() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "fleet_monitoring.ipynb"}
