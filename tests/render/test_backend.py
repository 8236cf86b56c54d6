"""Tests of the rendering backends: system dot, graphviz-pure, none (a clear error)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch.nn as nn

from shapeviz._errors import MissingBackendError, SpecError
from shapeviz.render import backend as be
from shapeviz.render.backend import Diagram, find_backend, run_dot
from shapeviz.render.unrolled import unroll

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SYSTEM_DOT = shutil.which("dot")
GRAPHVIZ_PURE = shutil.which("graphviz-pure") or shutil.which(
    "graphviz-pure", path=str(be._python_bin_dir()))


@pytest.fixture
def diagram() -> Diagram:
    return unroll(nn.LSTM(4, 6, bidirectional=True), T=3, bs=2)


@pytest.fixture
def only_graphviz_pure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds graphviz-pure and nothing else (no system dot)."""
    if GRAPHVIZ_PURE is None:
        pytest.skip("graphviz-pure is not installed")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "graphviz-pure").symlink_to(GRAPHVIZ_PURE)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.delenv(be.ENV_VAR, raising=False)
    return bindir


def _nothing_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, python_bin: Path | None = None) -> None:
    """An empty PATH, no $SHAPEVIZ_DOT, and ``python_bin`` (else the empty folder) as the running Python's."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(be, "_python_bin_dir", lambda: python_bin or empty)
    monkeypatch.delenv(be.ENV_VAR, raising=False)


@pytest.fixture
def no_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _nothing_on_path(tmp_path, monkeypatch)
    monkeypatch.setattr(be, "_installed_script", lambda dist: None)


# ------------------------------------------------------------------ graphviz-pure (dot hidden)
def test_graphviz_pure_is_found_without_dot(only_graphviz_pure: Path) -> None:
    b = find_backend()
    assert b is not None and b.kind == "graphviz-pure"
    assert shutil.which("dot") is None


def test_graphviz_pure_renders_svg_and_png(only_graphviz_pure: Path, diagram: Diagram,
                                           tmp_path: Path) -> None:
    svg = diagram.render(tmp_path / "d.svg")
    text = svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "[1] = layer 0, backward" in text and "h_n[1] (bs=2, h=6)" in text
    png = diagram.render(tmp_path / "d.png")
    assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 5_000


def test_graphviz_pure_next_to_python_when_not_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        diagram: Diagram) -> None:
    if GRAPHVIZ_PURE is None:
        pytest.skip("graphviz-pure is not installed")
    bindir = tmp_path / "venv-bin"
    bindir.mkdir()
    (bindir / "graphviz-pure").symlink_to(GRAPHVIZ_PURE)
    _nothing_on_path(tmp_path, monkeypatch, bindir)
    b = find_backend()
    assert b is not None and b.kind == "graphviz-pure" and b.path.startswith(str(bindir))
    assert diagram.pipe("svg").startswith(b"<?xml")


def test_graphviz_pure_found_from_its_install_record_when_not_on_path_nor_next_to_python(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, diagram: Diagram) -> None:
    """`pip install --user` or `--target` puts the script in a folder often not on PATH: the installed
    distribution's file list still names it."""
    if GRAPHVIZ_PURE is None:
        pytest.skip("graphviz-pure is not installed")
    _nothing_on_path(tmp_path, monkeypatch)
    b = find_backend()
    assert b is not None and b.kind == "graphviz-pure"
    assert os.path.samefile(b.path, GRAPHVIZ_PURE)
    assert diagram.pipe("svg").startswith(b"<?xml")
    assert be._installed_script("shapeviz-no-such-distribution") is None


@pytest.mark.parametrize("record", ["../../bin/fake-layout", "../../../bin/fake-layout"],
                         ids=["target_install", "user_install"])
def test_a_script_is_found_where_pip_recorded_or_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        record: str) -> None:
    """A `--user` install records the script's true place (~/.local/bin); a `--target` install records
    it against pip's temporary folder but writes it to bin/ beside the packages."""
    site = tmp_path / ("lib/python3/site-packages" if record.startswith("../../../") else "target")
    info = site / "fake_layout-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-layout\nVersion: 1.0\n")
    (info / "RECORD").write_text(f"{record},,\nfake_layout-1.0.dist-info/METADATA,,\n")
    script = (tmp_path / "bin" if record.startswith("../../../") else site / "bin") / "fake-layout"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.syspath_prepend(str(site))
    assert os.path.samefile(be._installed_script("fake-layout"), script)
    script.chmod(0o644)  # not executable: not a program to run
    assert be._installed_script("fake-layout") is None


# ------------------------------------------------------------------ system dot
@pytest.mark.skipif(SYSTEM_DOT is None, reason="no system Graphviz dot on PATH")
def test_system_dot_is_preferred(diagram: Diagram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(be.ENV_VAR, raising=False)
    b = find_backend()
    assert b is not None and b.kind == "dot" and b.path == SYSTEM_DOT
    assert diagram.render(tmp_path / "d.png").read_bytes().startswith(PNG_MAGIC)
    assert b"<svg" in diagram.pipe("svg")


def test_env_var_picks_the_program(only_graphviz_pure: Path, monkeypatch: pytest.MonkeyPatch,
                                   diagram: Diagram) -> None:
    monkeypatch.setenv(be.ENV_VAR, str(only_graphviz_pure / "graphviz-pure"))
    b = find_backend()
    assert b is not None and b.kind == "env"
    assert diagram.pipe("svg").startswith(b"<?xml")
    monkeypatch.setenv(be.ENV_VAR, "no-such-dot-program")
    with pytest.raises(MissingBackendError, match=r"SHAPEVIZ_DOT='no-such-dot-program'"):
        find_backend()


# ------------------------------------------------------------------ no backend
def test_missing_backend_error_says_how_to_install(no_backend: None, diagram: Diagram,
                                                   tmp_path: Path) -> None:
    assert find_backend() is None
    with pytest.raises(MissingBackendError) as err:
        diagram.render(tmp_path / "d.svg")
    msg = str(err.value)
    for how in ("apt-get install graphviz", "brew install graphviz", "pip install graphviz-pure"):
        assert how in msg
    assert not (tmp_path / "d.svg").exists()
    assert "digraph unroll" in diagram.source  # the DOT text needs no program


def test_jupyter_bundle(no_backend: None, diagram: Diagram, monkeypatch: pytest.MonkeyPatch,
                        only_graphviz_pure: Path) -> None:
    bundle = diagram._repr_mimebundle_()
    assert bundle["text/plain"] == diagram.source
    assert bundle["image/svg+xml"].lstrip().startswith("<?xml")


def test_jupyter_bundle_without_backend(no_backend: None, diagram: Diagram) -> None:
    bundle = diagram._repr_mimebundle_()
    assert bundle == {"text/plain": diagram.source}


# ------------------------------------------------------------------ .graph: a graphviz.Digraph
def test_graph_is_a_digraph_and_restyling_it_is_what_renders(only_graphviz_pure: Path, diagram: Diagram) -> None:
    import graphviz

    assert isinstance(diagram.graph, graphviz.Digraph) and diagram.source == diagram.graph.source
    before = diagram.pipe("svg").decode()
    assert 'fill="#fdf6e3"' not in before
    diagram.graph.graph_attr["bgcolor"] = "#fdf6e3"
    diagram.graph.node_attr["fontsize"] = "15"
    assert "bgcolor=\"#fdf6e3\"" in diagram.source.splitlines()[1]
    after = diagram.pipe("svg").decode()
    assert 'fill="#fdf6e3"' in after  # the background
    assert after.count('font-size="15.00"') > 40 and 'font-size="15.00"' not in before  # every node's labels


def test_a_diagram_from_dot_text_has_no_graph() -> None:
    d = Diagram('digraph { "a\u0007" -> b }', name="text")
    assert d.graph is None and d.source == 'digraph { "a\u2407" -> b }'  # a control character made visible


def test_free_text_in_plain_labels_is_quoted_and_escaped_by_graphviz(only_graphviz_pure: Path) -> None:
    """Module paths in the "not drawn" node: a quote, a backslash, something like an HTML label."""
    from shapeviz.core.model import conventions
    from shapeviz.render.unrolled import MAX_PANELS, Panel, to_graph

    conv = conventions(nn.GRU(2, 3))
    paths = ["m0"] * MAX_PANELS + ['say "hi"\\n', "<b>x</b>"]
    g = to_graph([Panel(conv, T=2, bs=1, path=p) for p in paths])
    line = next(x for x in g.source.splitlines() if x.startswith("\tmore "))
    assert line == ('\tmore [label="… 2 more recurrent modules, not drawn: say \\"hi\\"\\\\n … <b>x</b> '
                    '(see the trace table)" shape=box style=dashed]')
    svg = Diagram(g).pipe("svg").decode()
    assert "not drawn: say &quot;hi&quot;\\n … &lt;b&gt;x&lt;/b&gt; (see the trace table)" in svg


# ------------------------------------------------------------------ formats and failures
@pytest.mark.parametrize("name", ["d.pdf", "d.jpg", "d"])
def test_bad_suffix_lists_valid_formats(name: str, diagram: Diagram, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="valid formats: svg, png"):
        diagram.render(tmp_path / name)


def test_explicit_format_and_uppercase_suffix(only_graphviz_pure: Path, diagram: Diagram,
                                              tmp_path: Path) -> None:
    assert diagram.render(tmp_path / "D.SVG").read_bytes().lstrip().startswith(b"<?xml")
    out = diagram.render(tmp_path / "picture.bin", format="png")
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_layout_program_failure_is_reported(only_graphviz_pure: Path) -> None:
    with pytest.raises(Exception, match="failed") as err:
        run_dot("digraph { a -> }", "svg")
    assert not isinstance(err.value, MissingBackendError)


def _slow_renderer(tmp_path: Path) -> tuple[be.Backend, Path]:
    """A stand-in for dot that writes "<its pid> <its child's pid>" and sleeps (its child too)."""
    pids = tmp_path / "pids"
    script = tmp_path / "slow-dot"
    script.write_text(f'#!/bin/sh\nsleep 300 &\necho "$$ $!" > {pids}.tmp\nmv {pids}.tmp {pids}\nwait\n',
                      encoding="utf-8")
    script.chmod(0o755)
    return be.Backend(str(script), "env"), pids


def _all_gone(pids: Path) -> bool:
    """Whether every pid in the file has ended (a zombie awaiting its reaper counts as ended)."""
    for pid in (int(p) for p in pids.read_text().split()):
        stat = Path(f"/proc/{pid}/stat")
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            return False
    return True


def _wait_gone(pids: Path) -> bool:
    for _ in range(200):  # SIGKILL is asynchronous for the grandchild: up to 10 s, never a timing assert
        if _all_gone(pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
def test_a_renderer_past_its_time_limit_is_killed_with_its_children(tmp_path: Path) -> None:
    slow, pids = _slow_renderer(tmp_path)
    with pytest.raises(be.RenderError, match=r"took longer than 0.5 s and was stopped"):
        run_dot("digraph { a }", "svg", slow, timeout=0.5)
    assert _wait_gone(pids)


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit, ValueError])
def test_the_renderer_never_outlives_its_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                stop: type[BaseException]) -> None:
    slow, pids = _slow_renderer(tmp_path)
    real = subprocess.Popen.communicate

    def interrupted(self: subprocess.Popen[bytes], *args: object, **kwargs: object) -> object:
        for _ in range(200):  # until the renderer has started its child
            if pids.exists():
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                real(self, timeout=0.05)
        raise stop()

    monkeypatch.setattr(subprocess.Popen, "communicate", interrupted)
    with pytest.raises(stop):
        run_dot("digraph { a }", "svg", slow)
    assert pids.exists() and _wait_gone(pids)


def test_repr_is_short(diagram: Diagram) -> None:
    assert repr(diagram).startswith("<Diagram 'LSTM': ") and str(diagram) == diagram.source
    assert os.linesep not in repr(diagram)


# ------------------------------------------------------------------ layout facts, from -Tplain
def _layout(src: str, program: str) -> tuple[dict[str, tuple[float, ...]], list[tuple[str, str, list]]]:
    out = subprocess.run([program, "-Tplain"], input=src.encode(), capture_output=True, check=True).stdout
    nodes: dict[str, tuple[float, ...]] = {}
    edge_list = []
    for line in out.decode().splitlines():
        p = line.split()
        if p[0] == "node":
            nodes[p[1]] = tuple(float(v) for v in p[2:6])  # x, y, width, height (inches)
        elif p[0] == "edge" and "invis" not in p:
            n = int(p[3])
            pts = [(float(p[4 + 2 * i]), float(p[5 + 2 * i])) for i in range(n)]
            edge_list.append((p[1], p[2], pts))
    return nodes, edge_list


PROGRAMS = [p for p in (SYSTEM_DOT, GRAPHVIZ_PURE) if p]


@pytest.mark.skipif(not PROGRAMS, reason="no layout program")
@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: Path(p).name)
@pytest.mark.parametrize(("model", "T", "max_steps"), [
    (nn.LSTM(3, 4, num_layers=2, bidirectional=True), 4, 6),
    (nn.RNN(3, 4, num_layers=4, bidirectional=True), 16, 16),  # big: needs ordering=out
    (nn.GRU(3, 4, num_layers=3, batch_first=True), 1000, 6),
    (nn.LSTMCell(3, 4), 5, 6),
], ids=["lstm2bi", "rnn4bi_T16", "gru3_collapsed", "lstmcell"])
def test_layout_columns_straight_lanes_level_no_overlap(program: str, model: nn.Module, T: int,
                                                        max_steps: int) -> None:
    nodes, edge_list = _layout(unroll(model, T=T, bs=2, max_steps=max_steps).source, program)
    columns: dict[str, list[float]] = {}
    for nid, (x, _y, _w, _h) in nodes.items():
        columns.setdefault(nid.rsplit("_", 1)[1], []).append(x)
    for col, xs in columns.items():
        if col.isdigit():
            assert max(xs) - min(xs) < 0.02, f"column {col} is not straight: {xs}"
    boxes = sorted(nodes.items())
    for i, (a, (xa, ya, wa, ha)) in enumerate(boxes):
        for b, (xb, yb, wb, hb) in boxes[i + 1:]:
            overlap = abs(xa - xb) < (wa + wb) / 2 - 0.01 and abs(ya - yb) < (ha + hb) / 2 - 0.01
            assert not overlap, f"{a} and {b} overlap"
    lane = [(t, h, pts) for t, h, pts in edge_list if t[:3] == h[:3] and t[0] == "l" and t[2] in "fb"]
    assert lane
    for t, h, pts in lane:
        ys = [y for _, y in pts]
        assert max(ys) - min(ys) < 0.02, f"lane edge {t}->{h} is not level"
        rightwards = pts[-1][0] > pts[0][0]
        assert rightwards == (t[2] == "f"), f"{t}->{h} runs the wrong way"
    # data from the input row reaches each lane of layer 0 within its own column band
    for t, h, pts in edge_list:
        if h.startswith("x_") and t.startswith("l0"):
            xs = [x for x, _ in pts]
            assert max(abs(x - nodes[h][0]) for x in xs) < 1.5, f"{h}->{t} strays from its column"
