"""A quiet `load_report()` hides library warnings in a Jupyter kernel too (real torch, real vLLM import)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# torch creates StreamHandler(sys.stderr) at import and keeps that stream object; in a kernel that is
# the cell's output stream, so redirecting sys.stderr alone does not hide its warnings. The child
# process plays the kernel: its sys.stderr is an in-memory stream before torch is imported.
CHILD = textwrap.dedent("""
    import io, logging, sys
    cell_output = io.StringIO()
    sys.stderr = cell_output
    import torch  # noqa: F401
    from vllm_course.engine import load_report
    with load_report("none"):
        logging.getLogger("torch").warning("warned during the load")
    logging.getLogger("torch").warning("warned after the load")
    sys.stderr = sys.__stderr__
    print(repr(cell_output.getvalue()))
""")


def test_does_a_quiet_load_hide_warnings_from_handlers_made_before_it():
    """Is a torch warning inside `load_report()` kept off the cell's output, and is one after it shown?"""
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    shown = done.stdout.strip().splitlines()[-1]
    assert "warned during the load" not in shown
    assert "warned after the load" in shown


def test_does_a_quiet_load_hide_progress_widgets_in_a_kernel():
    """In a real Jupyter kernel tqdm.auto draws widgets (vLLM's "Loading safetensors checkpoint shards"):
    is a bar inside `load_report()` kept out of the cell, and a bar after it shown?"""
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from tqdm.auto import tqdm\nfrom vllm_course.engine import load_report"),
        nbformat.v4.new_code_cell('with load_report("none"):\n    for _ in tqdm(range(3), desc="inside the load"):\n        pass'),
        nbformat.v4.new_code_cell('for _ in tqdm(range(3), desc="after the load"):\n    pass'),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    inside, after = (str(cell.outputs) for cell in nb.cells[1:])
    assert "widget-view" in after and "after the load" in after, after  # the kernel really draws widgets
    assert "inside the load" not in inside and "widget-view" not in inside, inside
