"""Untrusted input stays bounded and every name renders.

A trace file may come from anywhere, a model may be huge, a module may be named anything, and the layout
program may misbehave: shapeviz answers with a clear error, a capped drawing or a note, in bounded time.
Probes that could hang on a regression run in a child process with a time limit.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import shapeviz as sv
from shapeviz import SpecError
from shapeviz.core.model import Conventions
from shapeviz.render import backend as be
from shapeviz.render.backend import Diagram, RenderError
from shapeviz.render.unrolled import MAX_CELLS
from shapeviz.tracing.records import Call, CallKind, TensorInfo, Trace

HAS_DOT = shutil.which("dot") is not None


def _bounded(code: str, timeout: float = 60.0, memory_gb: int = 0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child Python with a time limit (and an address-space limit) and return its result."""
    prelude = ""
    if memory_gb:
        prelude = (f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory_gb << 30}, {memory_gb << 30}))\n")
    try:
        return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not finish within {timeout:g} s")


class _Loop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRUCell(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = None
        for t in range(x.shape[0]):
            h = self.rnn(x[t], h)
        return h


def _loop_trace() -> Trace:
    return sv.trace(_Loop(), torch.zeros(5, 2, 4))


# ---------------------------------------------------------------------- item 7: a crafted trace file
def test_from_json_refuses_calls_that_are_each_others_parent() -> None:
    doc = _loop_trace().to_dict()
    doc["calls"][0]["parent"] = 1  # the model inside its own GRUCell call: unroll() walked this for ever
    with pytest.raises(SpecError, match=r"calls\[0\]\.parent: expected the index of an earlier module call"):
        Trace.from_json(json.dumps(doc))


@pytest.mark.parametrize(("field", "value", "match"), [
    ("index", 7, r"calls\[1\]\.index: expected 1"),
    ("parent", 1, r"calls\[1\]\.parent: expected the index of an earlier module call \(0 to 0\), got 1"),
])
def test_from_json_refuses_calls_out_of_order(field: str, value: int, match: str) -> None:
    doc = _loop_trace().to_dict()
    doc["calls"][1][field] = value
    with pytest.raises(SpecError, match=match):
        Trace.from_json(json.dumps(doc))


def test_from_json_refuses_references_to_calls_that_are_not_there() -> None:
    doc = _loop_trace().to_dict()
    n = len(doc["calls"])
    doc["calls"][1]["outputs"][0]["produced_by"] = n + 5
    with pytest.raises(SpecError, match=rf"produced_by: expected a call index below {n}"):
        Trace.from_json(json.dumps(doc))


def _packed_doc() -> dict:
    from torch.nn.utils.rnn import pack_padded_sequence

    return sv.trace(nn.GRU(4, 8), pack_padded_sequence(torch.zeros(5, 3, 4), [5, 4, 2])).to_dict()


@pytest.mark.parametrize("runs", [[[10**15, 1]], [[0, 3]], [[2, 1], [3, 1]], [[3, 0]]])
def test_from_json_refuses_batch_sizes_no_packed_sequence_has(runs: list) -> None:
    doc = _packed_doc()
    info = next(i for c in doc["calls"] for i in c["inputs"] if i["batch_sizes"])
    info["batch_sizes"] = runs
    with pytest.raises(SpecError, match=r"batch_sizes\[\d\]: expected"):
        Trace.from_json(json.dumps(doc))


def test_a_hand_made_trace_with_a_parent_cycle_unrolls_in_bounded_time() -> None:
    """Trace objects built in code skip from_json's checks: the renderers themselves never loop."""
    r = _bounded("""
        import torch, torch.nn as nn, shapeviz as sv
        class Loop(nn.Module):
            def __init__(self): super().__init__(); self.rnn = nn.GRUCell(4, 8)
            def forward(self, x):
                h = None
                for t in range(x.shape[0]): h = self.rnn(x[t], h)
                return h
        t = sv.trace(Loop(), torch.zeros(5, 2, 4))
        t.calls[0].parent = 1
        print(len(t.unroll().source) > 0)
    """, timeout=60)
    assert r.stdout.strip() == "True", r.stderr[-2000:]


def test_from_json_refuses_a_depth_that_is_not_its_parents_plus_one() -> None:
    doc = _loop_trace().to_dict()
    doc["calls"][1]["depth"] = 7
    with pytest.raises(SpecError, match=r"calls\[1\]\.depth: expected 1 \(one more than its parent, calls\[0\]\)"):
        Trace.from_json(json.dumps(doc))


class _CountedCall(Call):
    """A Call that counts how often its ``parent`` is read (the steps of a walk up the enclosing calls)."""

    reads = 0

    @property  # type: ignore[override]
    def parent(self) -> int | None:
        _CountedCall.reads += 1
        return self._parent

    @parent.setter
    def parent(self, value: int | None) -> None:
        self._parent = value


def _deep_trace(levels: int, steps: int, kind: type[Call] = Call) -> Trace:
    """``levels`` modules nested in each other, the innermost calling a GRUCell ``steps`` times."""
    from shapeviz.core.model import conventions

    conv = conventions(nn.GRUCell(4, 8))
    calls = [kind(index=i, path=f"m{i}", type="Block", kind=CallKind.MODULE, depth=i,
                  parent=i - 1 if i else None, site=f"model.py:{i}") for i in range(levels)]
    x, h = TensorInfo((2, 4), role="input"), TensorInfo((2, 8), role="hx")
    calls += [kind(index=levels + k, path="cell", type="GRUCell", kind=CallKind.MODULE, conventions=conv,
                   depth=levels, parent=levels - 1, site="model.py:99", inputs=[x, h],
                   outputs=[TensorInfo((2, 8), role="h_1")]) for k in range(steps)]
    return Trace(calls=calls, model="Deep")


def test_a_lane_of_calls_nested_deep_unrolls_in_steps_linear_in_the_calls() -> None:
    """Each call's chain of enclosing call sites used to be walked in full: calls x depth steps."""
    small = _deep_trace(1000, 10)
    assert Trace.from_json(small.to_json()) == small  # a valid trace: from_json takes it
    t = _deep_trace(1000, 2000, _CountedCall)
    _CountedCall.reads = 0
    assert "GRUCell" in t.unroll().source
    assert _CountedCall.reads < 10 * len(t.calls)  # 2,000,000 parent reads before; a few per call now


def test_huge_packed_batch_in_a_hand_made_trace_is_described_in_bounded_memory() -> None:
    r = _bounded("""
        from shapeviz.core.model import Conventions
        from shapeviz.render.panels import Panel, flow_notes
        p = Panel(Conventions("GRU", cell=False, input_size=4, hidden_size=8), T=2, runs=((10**15, 1), (1, 1)))
        print([n for n in flow_notes(p) if n.startswith("packed")][0][:60])
    """, timeout=60, memory_gb=6)
    assert r.stdout.startswith("packed: lengths 2, 1, 1, 1, 1, 1, 1, 1, ..."), r.stderr[-2000:]


def _wide_trace(calls: int, tensors: int) -> Trace:
    infos = [TensorInfo((1, 2)) for _ in range(tensors)]
    return Trace(calls=[Call(index=i, path=f"m{i}", type="Linear", kind=CallKind.MODULE, inputs=list(infos),
                             outputs=list(infos)) for i in range(calls)], model="Crafted")


def test_plot_of_a_call_with_thousands_of_tensors_draws_a_few_and_counts_the_rest() -> None:
    pytest.importorskip("matplotlib")
    fig = _wide_trace(4, 1500).plot()
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) < 200  # drawn: 5 blocks and a "+N more" per lane and row, not 12,000 blocks
    assert texts.count("+1,495 more") == 8


@pytest.mark.slow
def test_plot_of_a_crafted_200k_record_file_is_quick() -> None:
    """The issue's probe: a 3.6 MB file of 20 calls with 10,000 tensors each (took over 60 s to plot)."""
    pytest.importorskip("matplotlib")
    calls = [{"index": i, "path": f"m{i}", "type": "Linear", "kind": "module", "inputs": [{"shape": [1, 2]}] * 10000}
             for i in range(20)]
    t = Trace.from_json(json.dumps({"schema": "shapeviz.trace/1", "sizes": {}, "calls": calls}))
    fig = t.plot()
    fig.savefig(io.BytesIO(), format="png")
    assert len(fig.axes[0].texts) < 400  # drawn: 40 rows of a few blocks, not 200,000 blocks


def test_plot_draws_names_as_typed() -> None:
    """A name with ``$…$`` is not mathtext (a parse error when drawn), a control character is visible."""
    pytest.importorskip("matplotlib")
    t = _wide_trace(1, 1)
    t.calls[0].path = "$\\frac{$\x1b[31m"
    fig = t.plot()
    fig.savefig(io.BytesIO(), format="png")
    assert "$\\frac{$\\x1b[31m" in [x.get_text() for x in fig.axes[0].texts]


# ---------------------------------------------------------------------- item 8: the same cap everywhere
def test_unroll_of_10000_layers_is_refused_before_any_dot_is_built() -> None:
    conv = Conventions("GRU", cell=False, input_size=1, hidden_size=1, num_layers=10_000)
    with pytest.raises(SpecError, match=rf"= 40,000 cells, more than the {MAX_CELLS:,} shapeviz lays out; "
                                        r"draw a layer with fewer layers"):
        sv.unroll(conv)  # before: a 21.8 MB DOT


@pytest.mark.slow
def test_unroll_of_a_10000_layer_gru_module_is_refused() -> None:
    """The issue's probe (building the module itself takes most of a minute)."""
    with pytest.raises(SpecError, match=r"= 40,000 cells"):
        sv.unroll(nn.GRU(1, 1, num_layers=10_000, device="meta"))


def test_unroll_with_a_huge_max_steps_is_refused() -> None:
    with pytest.raises(SpecError, match=r"1000000 step columns x 2 layers .* draw at most max_steps=749"):
        sv.unroll(nn.GRU(1, 1, num_layers=2), T=10**6, max_steps=10**6)


def test_trace_unroll_has_the_same_cap() -> None:
    t = sv.trace(nn.GRU(2, 3, num_layers=400, device="meta"), torch.zeros(5, 2, 2, device="meta"))
    with pytest.raises(SpecError, match=r"cells, more than the 1,500"):
        t.unroll()
    sv.unroll(nn.GRU(2, 3, num_layers=150, bidirectional=True), T=3, bs=2)  # 3 x 150 x 2 = 900: drawn


# ---------------------------------------------------------------------- item 9: any name renders
NAMES = ["enc\x1b[31mred", "bad\ud800x", "nul\x00x", "nonchar\ufffe", "c1\x9b2J"]


def _named(name: str) -> nn.Module:
    inner = nn.Module()
    inner.add_module(name, nn.GRU(4, 8))

    class Named(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return getattr(self.inner, name)(x)

    return Named()


@pytest.mark.parametrize("name", NAMES)
def test_every_name_renders_in_dot_text_and_json(name: str) -> None:
    t = sv.trace(_named(name), torch.zeros(5, 2, 4))
    source = t.unroll().source
    source.encode("utf-8")  # a lone surrogate used to raise UnicodeEncodeError here
    assert not any(ord(c) < 0x20 and c not in "\t\n\r" for c in source)
    table = t.table()
    table.encode("utf-8")
    assert "\x1b" not in table and "\x9b" not in table  # nothing reaches the terminal as a control sequence
    text = t.to_json()
    text.encode("utf-8")
    assert Trace.from_json(text) == t  # the name itself round-trips exactly


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz dot not installed")
@pytest.mark.parametrize("name", NAMES[:4])
def test_every_name_renders_to_svg(name: str, tmp_path: Path) -> None:
    t = sv.trace(_named(name), torch.zeros(5, 2, 4))
    path = t.unroll().render(tmp_path / "d.svg")  # a RenderError (not well-formed) before
    assert path.read_bytes().rstrip().endswith(b"</svg>")


# ---------------------------------------------------------------------- items 10, 15: a misbehaving dot
def _fake_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    prog = tmp_path / "fake-dot"
    prog.write_text("#!/bin/sh\n" + body + "\n")
    prog.chmod(0o755)
    monkeypatch.setenv(be.ENV_VAR, str(prog))


def test_garbage_from_dot_is_not_saved_as_the_svg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dot(tmp_path, monkeypatch, "cat >/dev/null; echo 'Segmentation fault (core dumped)'; exit 0")
    old = tmp_path / "d.svg"
    old.write_text("<svg>the old diagram</svg>")
    with pytest.raises(RenderError, match=r"exited 0 but did not write an SVG document: .*'Segmentation fault"):
        sv.unroll(nn.GRU(4, 8), T=3).render(old)
    assert old.read_text() == "<svg>the old diagram</svg>"
    with pytest.raises(RenderError, match="did not write a PNG image"):
        sv.unroll(nn.GRU(4, 8), T=3).render(tmp_path / "d.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.svg", "fake-dot"]


def test_notebook_display_gives_up_on_a_hanging_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dot(tmp_path, monkeypatch, "sleep 8; exit 1")
    assert Diagram.display_timeout <= 10  # "a few seconds" by default
    monkeypatch.setattr(Diagram, "display_timeout", 1.0, raising=False)
    d = sv.unroll(nn.GRU(4, 8), T=3)
    start = time.perf_counter()
    bundle = d._repr_mimebundle_()
    assert time.perf_counter() - start < 7  # it did not wait for the program (8 s), let alone 120 s
    assert set(bundle) == {"text/plain"}
    note, _, rest = bundle["text/plain"].partition("\n")
    assert note.startswith("// shapeviz: the diagram was not drawn (") and "took longer than 1 s" in note
    assert rest == d.source


def test_notebook_display_notes_a_failing_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dot(tmp_path, monkeypatch, "cat >/dev/null; echo garbage; exit 0")
    bundle = sv.unroll(nn.GRU(4, 8), T=3)._repr_mimebundle_()
    assert "image/svg+xml" not in bundle
    assert bundle["text/plain"].startswith("// shapeviz: the diagram was not drawn (")


@pytest.mark.skipif(os.name != "posix", reason="a shell script as the fake dot")
def test_hanging_dot_leaves_no_process_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pid"
    _fake_dot(tmp_path, monkeypatch, f"echo $$ > {marker}; sleep 30")
    monkeypatch.setattr(Diagram, "display_timeout", 0.5, raising=False)
    sv.unroll(nn.GRU(4, 8), T=3)._repr_mimebundle_()
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
