"""The notebook extension with a real kernel: tests/notebooks/extension.ipynb executed by nbclient.

Skipped when the ``notebook`` extra (IPython, nbclient, nbformat, ipykernel) is not installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import shapeviz as sv
from shapeviz.apps.ipython import Extension, load, unload
from shapeviz.render.backend import find_backend
from shapeviz.render.html import dim_cells, shape_error_html

NOTEBOOK = Path(__file__).parent / "notebooks" / "extension.ipynb"


@pytest.fixture(scope="module")
def cells() -> list[Any]:
    """The notebook's code cells after one run in a fresh kernel (this Python's ipykernel)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("IPython")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # jupyter_client starts a kernelspec whose argv[0] is "python" with sys.executable: this Python
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    return [c for c in nb.cells if c.cell_type == "code"]


def _outputs(cell: Any, output_type: str) -> list[Any]:
    return [o for o in cell.outputs if o.output_type == output_type]


def _text(cell: Any) -> str:
    parts = [o.get("text", "") for o in _outputs(cell, "stream")]
    parts += [o.data.get("text/plain", "") for o in cell.outputs if "data" in o]
    return "".join(parts)


def test_extension_loads_and_turns_checking_on(cells: list[Any]) -> None:
    assert _outputs(cells[0], "error") == []
    assert _text(cells[0]) == "True"  # sv.enabled() after %load_ext
    assert "shapeviz: checking on" in _text(cells[1])  # %shapeviz status


def test_caught_mistake_renders_as_html_with_the_hint(cells: list[Any]) -> None:
    cell = cells[2]  # h_0 given as (bs, h) to a one-layer RNN
    [err] = _outputs(cell, "error")
    assert err.ename == "ShapeError"
    assert "[hidden_ndim]" in err.traceback[0] and "line 2" in err.traceback[0]
    [shown] = [o for o in _outputs(cell, "display_data") if "text/html" in o.data]
    page = shown.data["text/html"]
    assert "[hidden_ndim]" in page
    assert "<code>h0 = h0.unsqueeze(0)  # (bs, h) -&gt; (layers*D=1, bs, h)</code>" in page
    assert '<td class="sv-bad">—</td>' in page  # the missing layers*D dim is highlighted
    assert shown.data["text/plain"].startswith("[hidden_ndim] RNN(10, 20): argument `h_0`")


def test_declared_inputs_catch_the_untransposed_embedding(cells: list[Any]) -> None:
    assert _text(cells[3]) == ""  # %shapeviz inputs bs T: quiet, only status prints
    [err] = _outputs(cells[4], "error")
    assert "[batch_first_swap]" in err.traceback[0]
    [shown] = [o for o in _outputs(cells[4], "display_data") if "text/html" in o.data]
    page = shown.data["text/html"]
    assert "1: RNN(16, 32)" in page and "<code>x = x.transpose(0, 1)" in page
    assert page.count('class="sv-bad"') == 2  # T and bs disagree, emb agrees


def test_diagram_displays_as_svg(cells: list[Any]) -> None:
    [result] = _outputs(cells[5], "execute_result")
    if find_backend() is None:  # no dot program here: the bundle falls back to DOT text
        assert result.data["text/plain"].startswith("digraph")
    else:
        assert "<svg" in result.data["image/svg+xml"]


def test_dry_run_and_error_values_render_as_html(cells: list[Any]) -> None:
    [run] = _outputs(cells[6], "execute_result")
    assert "ShapeError [batch_first_swap]" in run.data["text/plain"]
    assert "<b>dry run</b>" in run.data["text/html"] and "<pre>trace of Sequential" in run.data["text/html"]
    [value] = _outputs(cells[7], "execute_result")  # run.error as a value: the HTML formatter
    assert 'class="sv-err"' in value.data["text/html"]


def test_trace_renders_its_table(cells: list[Any]) -> None:
    [result] = _outputs(cells[8], "execute_result")
    assert result.data["text/html"].startswith("<pre>trace of GRU: 1 module call")
    assert "output (bs=2, T=5, D*h=8)" in result.data["text/html"]


def test_off_and_unload(cells: list[Any]) -> None:
    assert _text(cells[9]) == ""  # %shapeviz off: quiet; the next cell shows checking is off
    [err] = _outputs(cells[10], "error")
    assert err.ename == "RuntimeError"  # PyTorch's own message: nothing of shapeviz is left on
    assert _outputs(cells[11], "error") == [] and _text(cells[11]) == "False"


# -------------------------------------------------- the same pieces without a kernel (fast)
def test_magic_commands_and_bad_usage() -> None:
    ext = load(None)
    try:
        assert ext.magic("") == ext.magic("status") == ext.status() == \
            "shapeviz: checking on (no input names: %shapeviz inputs bs T declares them)"
        assert ext.magic("inputs bs, T") is None  # changes print nothing; status says where things are
        assert ext.magic("status") == "shapeviz: checking on, inputs (bs T)" and sv.enabled()
        assert ext.magic("off") is None and not sv.enabled()
        assert ext.magic("status") == "shapeviz: checking off"
        assert ext.magic("on") is None
        assert ext.magic("status") == "shapeviz: checking on, inputs (bs T)"  # the names come back
        for bad in ("sideways", "status now", "on please", "inputs"):
            with pytest.raises(sv.SpecError, match="usage: %shapeviz on"):
                ext.magic(bad)
        with pytest.raises(sv.SpecError, match="not a dimension name"):
            ext.magic("inputs bs 3T")
    finally:
        unload(None)
    assert not sv.enabled()


def test_html_aligns_dims_and_escapes() -> None:
    err = sv.ShapeError(module="m: LSTM(10, 20)", argument="input", expected="(T=5, bs=2, emb=10) of dtype float32",
                        actual=(1, 5, 2, 10), code="input_ndim", hints=["x = x.squeeze(0)  # <drop>"])
    cells = dim_cells(err)
    assert cells is not None
    assert [(c.name, c.expected, c.actual, c.wrong) for c in cells] == [
        ("(extra)", None, 1, True), ("T", 5, 5, False), ("bs", 2, 2, False), ("emb", 10, 10, False)]
    page = shape_error_html(err, notes=["trace <note>"])
    assert "&lt;drop&gt;" in page and "<drop>" not in page
    assert "expected: (T=5, bs=2, emb=10) of dtype float32" in page
    assert "<summary>trace up to the error</summary><pre>trace &lt;note&gt;</pre>" in page
    assert shape_error_html(err, notes=["trace <note>"]) == page  # deterministic


def test_html_without_alignable_shapes() -> None:
    err = sv.ShapeError(module="lstm", argument="h_0", expected="(h_0 (1, bs, h), c_0 (1, bs, h))",
                        actual="Tensor", code="state_type")
    assert dim_cells(err) is None
    assert '<td class="sv-bad">Tensor</td>' in shape_error_html(err)


def test_extension_without_shell_leaves_nothing_on() -> None:
    ext = Extension(ip=None)
    ext.declare("T bs emb")
    assert ext.inputs == "T bs emb" and sv.enabled()
    ext.unload()
    assert not sv.enabled()


def test_inputs_then_status_in_one_cell_prints_the_status_once() -> None:
    """The README's block pasted into one cell printed the status line twice."""
    pytest.importorskip("IPython")
    probe = textwrap.dedent("""\
        from IPython.testing.globalipapp import start_ipython
        ip = start_ipython()
        ip.run_cell("%load_ext shapeviz")
        print("--- cell")
        ip.run_cell("%shapeviz inputs bs T\\n%shapeviz status")
        print("--- cell")
        ip.run_cell("%shapeviz off\\n%shapeviz")
        """)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("--- cell\n")[1:] == ["shapeviz: checking on, inputs (bs T)\n",
                                                   "shapeviz: checking off\n"]
