"""Tests of unroll(): golden DOT files, and the structural facts the pictures claim.

Regenerate the goldens with ``pytest tests/test_unroll.py --regen``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from itertools import pairwise
from types import SimpleNamespace as NS
from typing import Any

import pytest
import torch
import torch.nn as nn

from shapeviz._errors import SpecError
from shapeviz.core.model import Conventions, conventions
from shapeviz.gallery.models import CellOverDataset, CharRNNScratch
from shapeviz.render.unrolled import Panel, panels_from_trace, step_columns, to_dot, unroll

Golden = Callable[[str, str], None]  # the golden fixture of conftest.py


# ------------------------------------------------------------------ parsing the DOT we produce
_NODE = re.compile(r"^\s*(\w+) \[label=<(.*)> shape=plain", re.M)
_EDGE = re.compile(r"^\s*(\w+)(?::\w+)*(?::[nsew])? -> (\w+)(?::\w+)*(?::[nsew])?(?: \[(.*)\])?$", re.M)


def labels(src: str) -> dict[str, str]:
    """Node id -> its label text (HTML tags dropped, rows joined by ' | ')."""
    out = {}
    for nid, html in _NODE.findall(src):
        rows = [re.sub(r"<[^>]+>", "", r) for r in re.findall(r"<TD[^>]*>(.*?)</TD>", html)]
        out[nid] = " | ".join(r.replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&")
                              for r in rows)
    return out


def edges(src: str) -> list[tuple[str, str, str]]:
    return [(a, b, attrs or "") for a, b, attrs in _EDGE.findall(src)]


def visible_edges(src: str) -> list[tuple[str, str, str]]:
    return [e for e in edges(src) if "invis" not in e[2]]


# ------------------------------------------------------------------ goldens
LAYER_CASES = [(cls, layers, bidir, bf)
               for cls in (nn.RNN, nn.GRU, nn.LSTM)
               for layers in (1, 2, 3)
               for bidir in (False, True)
               for bf in (False, True)]


@pytest.mark.parametrize(("cls", "layers", "bidir", "bf"), LAYER_CASES,
                         ids=[f"{c.__name__}-L{n}-{'bi' if b else 'uni'}-{'bf' if f else 'sf'}"
                              for c, n, b, f in LAYER_CASES])
def test_golden_layers(golden: Golden, cls: type[nn.Module], layers: int, bidir: bool, bf: bool) -> None:
    m = cls(10, 20, num_layers=layers, bidirectional=bidir, batch_first=bf)
    name = f"{cls.__name__.lower()}_l{layers}_{'bi' if bidir else 'uni'}_{'bf' if bf else 'sf'}"
    golden(f"unroll/{name}.dot", unroll(m, T=3, bs=2).source)


OTHER_CASES: dict[str, tuple[Any, dict[str, Any]]] = {
    "lstm_proj": (nn.LSTM(10, 20, proj_size=5, num_layers=2), {"T": 4, "bs": 3}),
    "lstm_proj_bi_bf": (nn.LSTM(10, 20, proj_size=5, bidirectional=True, batch_first=True),
                        {"T": 3, "bs": 3}),
    "rnncell": (nn.RNNCell(10, 20), {"T": 4, "bs": 3}),
    "grucell": (nn.GRUCell(10, 20), {"T": 4, "bs": 3}),
    "lstmcell": (nn.LSTMCell(10, 20), {"T": 5, "bs": 3}),
    "lstmcell_unbatched": (nn.LSTMCell(10, 20), {"T": 3, "batched": False}),
    "rnn_collapsed_T1000": (nn.RNN(10, 20), {"T": 1000, "bs": 3}),
    "lstm_bi_collapsed_T50_max4": (nn.LSTM(10, 20, bidirectional=True, num_layers=2),
                                   {"T": 50, "bs": 3, "max_steps": 4}),
    "gru_unbatched_bi": (nn.GRU(10, 20, bidirectional=True), {"T": 3, "batched": False}),
    "lstm_symbolic": (nn.LSTM(10, 20), {}),
    "conventions_gru": (Conventions("GRU", cell=False, input_size=8, hidden_size=16), {"T": 2, "bs": 1}),
}


@pytest.mark.parametrize("name", sorted(OTHER_CASES))
def test_golden_other(golden: Golden, name: str) -> None:
    obj, kw = OTHER_CASES[name]
    golden(f"unroll/{name}.dot", unroll(obj, **kw).source)


def test_golden_trace_stand_in(golden: Golden) -> None:
    golden("unroll/trace_two_modules.dot", unroll(two_module_trace()).source)


# ------------------------------------------------------------------ structure
@pytest.mark.parametrize("cls", [nn.RNN, nn.GRU, nn.LSTM])
def test_state_index_labels_match_torch_layout(cls: type[nn.Module]) -> None:
    """h_n[layer*D + direction]: check the drawn labels against what torch actually returns."""
    torch.manual_seed(0)
    L, T, bs, h = 3, 4, 2, 5
    m = cls(3, h, num_layers=L, bidirectional=True).eval()
    x = torch.randn(T, bs, 3)
    with torch.no_grad():
        out, state = m(x)
    h_n = state[0] if cls is nn.LSTM else state
    # top layer: the forward lane's last step and the backward lane's first step are in output
    top = L - 1
    torch.testing.assert_close(h_n[top * 2 + 0], out[-1, :, :h])
    torch.testing.assert_close(h_n[top * 2 + 1], out[0, :, h:])
    # every layer: a 1-layer module with that layer's weights reproduces h_n[2l], h_n[2l+1]
    inp = x
    for layer in range(L):
        one = cls(inp.shape[-1], h, bidirectional=True).eval()
        with torch.no_grad():
            for name, p in one.named_parameters():
                p.copy_(getattr(m, name.replace("_l0", f"_l{layer}")))
            o1, s1 = one(inp)
        h1 = s1[0] if cls is nn.LSTM else s1
        torch.testing.assert_close(h_n[layer * 2], h1[0])
        torch.testing.assert_close(h_n[layer * 2 + 1], h1[1])
        inp = o1
    lab = labels(unroll(m, T=T, bs=bs).source)
    for layer in range(L):
        fwd_out, bwd_out = lab[f"l{layer}f_r"], lab[f"l{layer}b_l"]  # forward leaves right, backward left
        fwd_in, bwd_in = lab[f"l{layer}f_l"], lab[f"l{layer}b_r"]
        if cls is nn.LSTM:
            assert f"[{2 * layer}] = layer {layer}, forward" in fwd_out
            assert f"h_n[{2 * layer}] (bs=2, h=5)" in fwd_out and f"c_n[{2 * layer}]" in fwd_out
            assert f"h_n[{2 * layer + 1}] (bs=2, h=5)" in bwd_out
            assert f"c_0[{2 * layer + 1}]" in bwd_in and f"h_0[{2 * layer}]" in fwd_in
        else:
            assert fwd_out.startswith(f"h_n[{2 * layer}] = layer {layer}, forward")
            assert bwd_out.startswith(f"h_n[{2 * layer + 1}] = layer {layer}, backward")
            assert fwd_in.startswith(f"h_0[{2 * layer}] = layer {layer}, forward")
            assert bwd_in.startswith(f"h_0[{2 * layer + 1}] = layer {layer}, backward")


def test_example_label_from_the_issue() -> None:
    src = unroll(nn.GRU(4, 6, num_layers=2, bidirectional=True), T=2, bs=3).source
    assert "h_n[3] = layer 1, backward" in labels(src)["l1b_l"]


def _col(node: str) -> float:
    suffix = node.rsplit("_", 1)[1]
    return {"l": -1.0, "r": 1e9}.get(suffix, float(suffix) if suffix.isdigit() else 0.0)


def test_lanes_run_the_right_way() -> None:
    src = unroll(nn.LSTM(3, 4, num_layers=2, bidirectional=True), T=4, bs=2).source
    lane = [(a, b) for a, b, _ in visible_edges(src) if a[:3] == b[:3] and re.match(r"l\d[fb]", a)]
    fwd = [(a, b) for a, b in lane if a[2] == "f"]
    bwd = [(a, b) for a, b in lane if a[2] == "b"]
    # 2 layers x (4 steps + 1) links x 2 ports (h and c)
    assert len(fwd) == len(bwd) == 2 * 5 * 2
    assert all(_col(a) < _col(b) for a, b in fwd)
    assert all(_col(a) > _col(b) for a, b in bwd)
    # inputs feed both lanes of layer 0; both lanes of layer 0 feed the concatenation
    ups = {(b, a) for a, b, attrs in visible_edges(src) if "back" in attrs}  # declared downwards
    assert {("x_1", "l0f_1"), ("x_1", "l0b_1"), ("l0f_1", "k0_1"), ("l0b_1", "k0_1"),
            ("k0_1", "l1f_1"), ("k0_1", "l1b_1"), ("l1f_1", "y_1"), ("l1b_1", "y_1")} <= ups


def test_lstm_draws_h_and_c_and_proj_sizes() -> None:
    src = unroll(nn.LSTM(10, 20, proj_size=5), T=3, bs=4).source
    lab = labels(src)
    assert lab["l0f_1"] == "layer 0  t=1 | h (bs=4, proj=5) | c (bs=4, h=20)"
    assert lab["y_1"] == "output[1] | (bs=4, D*proj=5)"
    ports = {re.search(r":(h|c):", line).group(1) for line in src.splitlines()
             if line.strip().startswith("l0f_0:") and "->" in line}
    assert ports == {"h", "c"}


def test_every_tensor_has_named_shape() -> None:
    c = Conventions("GRU", cell=False, input_size=10, hidden_size=20, num_layers=2, bidirectional=True)
    lab = labels(unroll(c, T=3, bs=7).source)
    named = re.compile(r"\((\w+(\*\w+)?=\d+(, )?)+\)")
    for nid, text in lab.items():
        if "⋯" in text:
            continue
        assert named.search(text), f"{nid}: {text!r} shows no named shape"
    assert lab["x_l"] == f"input | {c.named('input', T=3, bs=7)}"
    assert lab["y_l"].startswith(f"output | {c.named('output', T=3, bs=7)}")


def test_batch_first_on_input_and_output_only() -> None:
    src = unroll(nn.GRU(10, 20, batch_first=True), T=3, bs=2).source
    lab = labels(src)
    assert lab["x_0"] == "input[:, 0] | (bs=2, emb=10)"
    assert lab["y_2"] == "output[:, 2] | (bs=2, D*h=20)"
    assert "batch_first=True" in lab["x_l"] and "(bs=2, T=3, emb=10)" in lab["x_l"]
    assert "h_n are never batch-first" in src
    assert "(layers*D=1, bs=2, h=20)" in src


def test_unbatched_has_no_bs() -> None:
    src = unroll(nn.LSTM(10, 20, bidirectional=True), T=3, batched=False).source
    assert "bs" not in "".join(labels(src).values())
    assert "(T=3, emb=10)" in src and "(layers*D=2, h=20)" in src and "unbatched" in src


def test_collapse_keeps_dot_size_constant() -> None:
    m = nn.LSTM(4, 8, num_layers=2, bidirectional=True)
    sizes = {}
    for T in (8, 10, 1000, 10**6):
        src = unroll(m, T=T, bs=2).source
        sizes[T] = (len(labels(src)), len(edges(src)), src.count("\n"))
        assert f"× {T - 6} step" in src
        assert f"t={T - 1}" in src and "t=2" in src and "t=3<" not in src
    assert len(set(sizes.values())) == 1
    assert len(src) < 30_000
    seven = unroll(m, T=7, bs=2).source  # hiding one step saves nothing: all 7 drawn
    assert "× 1 step" not in seven and "t=3<" in seven and "..." not in seven


def test_collapse_threshold_and_max_steps() -> None:
    assert len(step_columns(6, 6)) == 6
    assert [c.t or c.gap for c in step_columns(7, 6)] == ["0", "1", "2", "3", "4", "5", "6"]
    assert [c.t or c.gap for c in step_columns(8, 6)] == ["0", "1", "2", "2", "5", "6", "7"]
    assert [c.t or c.gap for c in step_columns(10, 2)] == ["0", "8", "9"]
    assert [c.t or c.gap for c in step_columns(3, 2)] == ["0", "1", "2"]
    src = unroll(nn.RNN(3, 4), T=10, bs=1, max_steps=8).source
    assert "× 2 steps" in src and "t=3" in src and "t=6" in src and "t=4<" not in src


def test_deterministic_and_independent_of_object_identity() -> None:
    a = unroll(nn.GRU(5, 6, num_layers=2), T=3, bs=2).source
    b = unroll(nn.GRU(5, 6, num_layers=2), T=3, bs=2).source
    assert a == b
    assert not re.search(r"0x[0-9a-f]{6,}", a)


def test_cell_unrolled_as_one_cell() -> None:
    lab = labels(unroll(nn.GRUCell(3, 4), T=3, bs=2).source)
    assert [lab[f"l0f_{i}"] for i in range(3)] == [f"GRUCell  t={i} | h (bs=2, h=4)" for i in range(3)]
    assert lab["l0f_l"].startswith("hx (initial state) | h_0 (bs=2, h=4)")
    assert lab["y_0"] == "h_1 @ t=0 | (bs=2, h=4)"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"T": 0}, "T must be a positive int"),
    ({"bs": -1}, "bs must be a positive int"),
    ({"T": 2.5}, "T must be a positive int"),
    ({"max_steps": 1}, "max_steps must be an int >= 2"),
    ({"bs": 2, "batched": False}, "unbatched inputs have no bs"),
])
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        unroll(nn.RNN(3, 4), **kwargs)


def test_not_recurrent() -> None:
    with pytest.raises(SpecError, match="not a recurrent module"):
        unroll(nn.Linear(3, 4), T=2)
    with pytest.raises(SpecError, match=r"takes a recurrent nn\.Module"):
        unroll("LSTM", T=2)


# ------------------------------------------------------------------ traces: stand-ins
def info(role: str, shape: tuple[int, ...], names: tuple[str, ...] | None = None) -> NS:
    return NS(role=role, shape=shape, names=names)


def call(path: str, mod: nn.Module | None, inputs: list[NS], outputs: list[NS] = (),
         kind: str = "module", type_: str = "") -> NS:
    return NS(path=path, type=type_ or type(mod).__name__, kind=kind,
              conventions=conventions(mod) if mod is not None else None,
              inputs=inputs, outputs=list(outputs))


def two_module_trace() -> NS:
    enc = nn.LSTM(10, 20, batch_first=True)
    dec = nn.GRUCell(20, 20)
    calls = [call("", None, [info("", (3, 9, 10))], type_="Seq2Seq"),
             call("encoder", enc, [info("input", (3, 9, 10))], [info("output", (3, 9, 20))])]
    calls += [call("decoder", dec, [info("input", (3, 20)), info("h_0", (3, 20))],
                   [info("h_1", (3, 20))]) for _ in range(4)]
    calls.append(call("decoder.0", None, [info("", (3, 20))], kind="op", type_="linear"))
    return NS(calls=calls)


def test_trace_stand_in_sizes_and_cells() -> None:
    panels = panels_from_trace(two_module_trace())
    assert [(p.path, p.conv.kind, p.T, p.bs, p.batched) for p in panels] == [
        ("encoder", "LSTM", 9, 3, True), ("decoder", "GRUCell", 4, 3, True)]
    src = unroll(two_module_trace()).source
    assert "subgraph cluster_0" in src and "subgraph cluster_1" in src
    assert "encoder: LSTM(10, 20, batch_first=True)" in src
    assert "p1_l0f_3" in src and "p1_l0f_4 " not in src


def test_trace_stand_in_unbatched_and_packed() -> None:
    gru = nn.GRU(4, 6)
    p = panels_from_trace(NS(calls=[call("rnn", gru, [info("input", (7, 4))])]))[0]
    assert (p.T, p.bs, p.batched) == (7, None, False)
    packed = call("rnn", gru, [info("input", (12, 4), ("sum(lengths)", "emb")), info("h_0", (1, 5, 6))])
    p = panels_from_trace(NS(calls=[packed]))[0]
    assert (p.T, p.bs, p.batched) == (None, 5, True)


def test_trace_without_recurrent_module() -> None:
    t = NS(calls=[call("fc", None, [info("", (2, 3))], kind="op", type_="linear")])
    with pytest.raises(SpecError, match="no call of a recurrent module"):
        unroll(t)
    with pytest.raises(SpecError, match="come from the trace"):
        unroll(two_module_trace(), T=3)


def test_to_dot_single_panel_has_no_cluster() -> None:
    src = to_dot([Panel(conventions(nn.RNNCell(2, 3)), T=2, bs=1)])
    assert "cluster" not in src and src.startswith("digraph unroll {")


# ------------------------------------------------------------------ traces: the real thing
def test_real_trace_lstmcell_loop_and_lstm() -> None:
    trace_mod = pytest.importorskip("shapeviz.tracing.session")

    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.LSTMCell(10, 20)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = c = torch.zeros(x.shape[1], 20)
            for x_t in x:
                h, c = self.cell(x_t, (h, c))
            return h

    t = trace_mod.trace(Loop(), torch.randn(7, 3, 10))
    src = unroll(t).source
    lab = labels(src)
    assert "T=7, bs=3" in src
    assert lab["l0f_0"] == "LSTMCell  t=0 | h (bs=3, h=20) | c (bs=3, h=20)"
    assert "× 1 step" not in src and "t=3<" in src  # 7 steps: all drawn

    lstm = nn.LSTM(10, 20, num_layers=2, bidirectional=True, batch_first=True)
    src = unroll(trace_mod.trace(lstm, torch.randn(3, 5, 10))).source
    assert "T=5, bs=3" in src and "input[:, 4]" in src and "h_n[3]" in src


def test_packed_trace_gives_real_T_and_bs() -> None:
    from torch.nn.utils.rnn import pack_padded_sequence

    import shapeviz as sv

    t = sv.trace(nn.GRU(4, 6), pack_padded_sequence(torch.randn(5, 3, 4), [5, 3, 2]))
    src = sv.unroll(t).source
    assert "T=5" in src and "bs=3" in src and "unknown" not in src


def test_unroll_from_a_trace() -> None:
    """A traced RNNCell loop over T=5 steps of bs=3 draws 5 cell nodes chained by 6 state edges."""
    import shapeviz as sv

    src = sv.unroll(sv.trace(CellOverDataset(4, 2), torch.randn(5, 3, 4))).source
    lab = labels(src)
    steps = sorted((n for n in lab if re.fullmatch(r"l0f_\d+", n)), key=lambda n: int(n[4:]))
    assert [lab[n] for n in steps] == [f"RNNCell  t={t} | h (bs=3, h=2)" for t in range(5)]
    chain = ["l0f_l", *steps, "l0f_r"]  # h_0 -> t=0 -> ... -> t=4 -> the state after the last step
    state = [(a, b) for a, b, _ in visible_edges(src) if a.startswith("l0f_") and b.startswith("l0f_")]
    assert state == list(pairwise(chain))
    ins = {(b, a) for a, b, attrs in visible_edges(src) if b.startswith("x_") and "back" in attrs}
    assert ins == {(f"x_{t}", f"l0f_{t}") for t in range(5)}  # each step reads its own input[t]
    assert "T=5, bs=3" in src


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_handwritten_loop_with_bs_equal_to_T_is_unrolled_over_every_step(n: int) -> None:
    """bs == T == n with h == n too: the first step's state ``H`` (zeros, its batch a guess ``bs|T?``) did not
    match the later steps' (``bs`` by evidence), so the loop was grouped one step late and drawn with n-1 steps
    (with n == 2: "no step repeats"). A step is the same code, module and shapes, whatever names it has."""
    import shapeviz as sv

    model = CharRNNScratch(vocab=6, hidden=n)
    t = sv.trace(model, torch.randint(0, 6, (n, n)), torch.zeros(n, n), ops=True, inputs_dims="bs T")
    assert f"× T={n}" in t.table()
    [panel] = panels_from_trace(t)
    assert n == panel.T
    assert f"T={n}, bs={n}" in sv.unroll(t).source


def test_handwritten_loop_traced_with_ops_is_one_cell_unrolled() -> None:
    import shapeviz as sv

    with sv.dims(vocab=28, h=512):
        t = sv.trace(CharRNNScratch(hidden=512), torch.randint(0, 28, (2, 5)), torch.zeros(2, 512), ops=True,
                     inputs_dims="bs T")
    [panel] = panels_from_trace(t)
    assert (panel.T, panel.bs, panel.conv.input_size, panel.conv.hidden_size) == (5, 2, 28, 512)
    src = sv.unroll(t).source
    lines, first = inspect.getsourcelines(CharRNNScratch.forward)
    step = first + next(i for i, line in enumerate(lines) if "H = torch.tanh(" in line)
    assert f"hand-written loop at models.py:{step}" in src and "T=5, bs=2" in src
    assert "(bs=2, h=512)" in src and "emb" not in src  # the one-hot input is vocab, as the trace named it
    assert "input @ t=0</TD></TR><TR><TD>(bs=2, vocab=28)" in src
    # each step's own output is the (bs, vocab) logits that torch.cat gathers after the loop, not h
    assert "output @ t=4</TD></TR><TR><TD>(bs=2, vocab=28)" in src and "h_1 @ t=" not in src
    without_ops = sv.trace(CharRNNScratch(hidden=512), torch.randint(0, 28, (2, 5)), torch.zeros(2, 512))
    with pytest.raises(SpecError, match="no call of a recurrent module"):
        sv.unroll(without_ops)  # no ops recorded: nothing to unroll


# ------------------------------------------------------------------ data flow between calls
def _flow_trace(kind: str) -> Any:
    import shapeviz as sv
    from shapeviz.gallery.models import (
        AttnSeq2Seq,
        CharRNNModel,
        PackedLSTM,
        Seq2SeqGRU,
        StackedCells,
        Vocab,
        predict_ch8,
    )

    g = torch.Generator().manual_seed(1)
    src = torch.randint(0, 20, (7, 3), generator=g)  # (T_src=7, bs=3)
    if kind == "decoder_greedy":
        return sv.trace(Seq2SeqGRU().greedy, src, 5)
    if kind == "decoder_teacher":
        return sv.trace(Seq2SeqGRU(), src, torch.randint(0, 20, (5, 3), generator=g))
    if kind == "decoder_attention":
        return sv.trace(AttnSeq2Seq().greedy, src, 5)
    if kind == "decoder_long":
        return sv.trace(Seq2SeqGRU().greedy, src, 60)
    if kind == "stacked_cells":
        return sv.trace(StackedCells(hidden=12), torch.randn(3, 8, generator=g))
    if kind == "packed":
        return sv.trace(PackedLSTM(4, 6), torch.randn(5, 3, 4, generator=g), torch.tensor([5, 3, 2]))
    if kind == "layer_stack":
        return sv.trace(_LayerStack(), torch.randn(5, 2, 4, generator=g))
    if kind == "cell_packed_loop":
        return sv.trace(_cell_over_packed, torch.randn(5, 3, 4, generator=g), torch.tensor([5, 3, 2]))
    vocab = Vocab("time traveller")
    return sv.trace(predict_ch8, "time ", 6, CharRNNModel(vocab=len(vocab)), vocab)  # "phases"


_CELL = nn.GRUCell(4, 6)


def _cell_over_packed(padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A hand-written loop over packed data: step t runs the cell on the first batch_sizes[t] rows."""
    from torch.nn.utils.rnn import pack_padded_sequence

    packed = pack_padded_sequence(padded, lengths)
    h, start = torch.zeros(3, 6), 0
    for n in packed.batch_sizes.tolist():
        h = torch.cat([_CELL(packed.data[start:start + n], h[:n]), h[n:]])
        start += n
    return h


class _LayerStack(nn.Module):
    """Two LSTM layers stacked by hand: layer1's output and state are layer2's input and h_0."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer1, self.layer2 = nn.LSTM(4, 8), nn.LSTM(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1, state = self.layer1(x)  # (T, bs, h), ((1, bs, h), (1, bs, h))
        return self.layer2(y1, state)[0]


FLOW_KINDS = ["decoder_greedy", "decoder_teacher", "decoder_attention", "decoder_long", "stacked_cells",
              "packed", "phases", "layer_stack", "cell_packed_loop"]


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_golden_data_flow(kind: str, golden: Golden) -> None:
    golden(f"unroll/flow_{kind}.dot", unroll(_flow_trace(kind)).source)


def _lane(lab: dict[str, str], prefix: str) -> list[str]:
    return sorted((n for n in lab if re.fullmatch(prefix + r"l0f_\d+", n)), key=lambda n: int(n.rsplit("_", 1)[1]))


def test_decoder_is_one_lane_over_its_calls_fed_by_the_encoder() -> None:
    src = unroll(_flow_trace("decoder_greedy")).source
    lab = labels(src)
    steps = _lane(lab, "p1_")
    assert [lab[n].split(" | ")[0] for n in steps] == [f"layer 0  call {k}" for k in range(5)]  # N = 5 steps
    assert ("p0_l0f_r", "p1_l0f_l") in {(a, b) for a, b, _ in visible_edges(src)}  # encoder h_n -> decoder h_0
    assert "h_0 = h_n of encoder" in lab["p1_l0f_l"]
    back = {(a, b) for a, b, attrs in visible_edges(src) if "#b03a2e" in attrs}
    assert back == {(f"p1_y_{k - 1}", f"p1_x_{k}") for k in range(1, 5)}  # output k-1 fed to input k
    assert "from step 0&#x27;s output" in lab["p1_x_1"] and "not from a step" in lab["p1_x_0"]  # ' is escaped
    assert "5 calls of one step each" in src and "T=5 calls" not in src  # decoding steps: no T


def test_teacher_forcing_is_drawn_without_feedback() -> None:
    src = unroll(_flow_trace("decoder_teacher")).source
    assert "#b03a2e" not in src  # no fed-back edge
    lab = labels(src)
    assert all("not from a step" in lab[f"p1_x_{k}"] for k in range(5))
    assert ("p0_l0f_r", "p1_l0f_l") in {(a, b) for a, b, _ in visible_edges(src)}


def test_attention_decoder_input_lists_the_encoder_results_it_was_computed_from() -> None:
    lab = labels(unroll(_flow_trace("decoder_attention")).source)
    assert "input computed from output of encoder (4 calls, 1-4)" in lab["p1_x_l"]
    assert "input computed from h_n of encoder (call 0)" in lab["p1_x_l"]


def test_long_decodes_collapse_to_the_same_dot_size() -> None:
    import shapeviz as sv
    from shapeviz.gallery.models import Seq2SeqGRU

    src = torch.randint(0, 20, (7, 3), generator=torch.Generator().manual_seed(1))
    short = unroll(sv.trace(Seq2SeqGRU().greedy, src, 7), max_steps=4)  # hides 3 steps
    long = unroll(_flow_trace("decoder_long"), max_steps=4)
    assert len(short.source.splitlines()) == len(long.source.splitlines())
    assert "× 3 steps" in short.source
    assert "× 56 steps" in long.source and "call 59" in long.source


def test_stacked_cells_have_an_edge_per_drawn_step() -> None:
    src = unroll(_flow_trace("stacked_cells")).source
    ups = {(a, b) for a, b, attrs in visible_edges(src) if a.startswith("p1_x_") and b.startswith("p0_y_")}
    drawn = [i for i, col in enumerate(step_columns(8)) if col.t]
    assert ups == {(f"p1_x_{i}", f"p0_y_{i}") for i in drawn}  # lstm1's h_1 at t goes up into lstm2's input at t


def test_packed_steps_carry_their_batch_sizes_and_h_n_leaves_at_each_length() -> None:
    src = unroll(_flow_trace("packed")).source
    lab = labels(src)
    sizes = [3, 3, 2, 1, 1]
    for t, n in enumerate(sizes):
        cell = lab[f"l0f_{t}"]
        assert f"batch_sizes[{t}] = {n}" in cell and f"h (bs={n}, h=6)" in cell
        start = sum(sizes[:t])
        assert lab[f"x_{t}"].startswith(f"input.data[{start}:{start + n}]")
    leaves = {t: re.search(r"h_n leaves: (\d+) seqs? of length (\d+)", lab[f"l0f_{t}"]) for t in range(5)}
    assert {t: (int(m[1]), int(m[2])) for t, m in leaves.items() if m} == {1: (1, 2), 2: (1, 3), 4: (1, 5)}
    assert "lengths 5, 3, 2" in src


def test_a_packed_stacked_bidirectional_layers_joined_steps_carry_their_batch_sizes() -> None:
    """Between a packed 2-layer bidirectional GRU's layers, step t's cat(→, ←) has batch_sizes[t] rows (as its
    lanes do): it was drawn with the whole batch at every step."""
    from torch.nn.utils.rnn import pack_padded_sequence

    import shapeviz as sv

    gru = nn.GRU(4, 6, num_layers=2, bidirectional=True, batch_first=True)
    x, lengths = torch.randn(4, 5, 4), torch.tensor([5, 3, 3, 1])
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    real = [int(n) for n in packed.batch_sizes]  # [4, 3, 3, 1, 1]
    lab = labels(sv.unroll(sv.trace(gru, packed)).source)
    assert [re.search(r"\(bs=(\d+), D\*h=12\)", lab[f"k0_{t}"])[1] for t in range(5)] == [str(n) for n in real]
    header = next(v for v in lab.values() if v.startswith("layer 0 output = layer 1 input"))
    assert "each step (batch_sizes[t], D*h=12)" in header


def test_a_packed_batch_padded_longer_than_its_longest_sequence_runs_steps_not_T() -> None:
    """x is (bs=4, T=6) with lengths 5, 3, 3, 1: the packed layer runs 5 steps. The caption called them T=5 and
    claimed a padded input (bs=4, T=5, emb=4), beside the trace's T=6."""
    from torch.nn.utils.rnn import pack_padded_sequence

    import shapeviz as sv

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(4, 6, batch_first=True)

        def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return self.rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))[1][0]

    for T, caption in ((6, "5 steps (its longest sequence), bs=4"), (5, "T=5, bs=4")):
        t = sv.trace(M(), torch.randn(4, T, 4), torch.tensor([5, 3, 3, 1]), inputs_dims="bs T emb")
        head = sv.unroll(t).source
        assert f"unrolled over time: {caption}" in head, head[:400]
        assert ("input (bs=4, 5, emb=4)" in head) == (T == 6)


def test_a_cell_looped_over_the_batchs_items_names_no_two_things_bs() -> None:
    """``for row in x.unbind(0): h = cell(row, h)`` over x (bs=3, T=4, 8): 3 calls, one per item of bs, each
    with a batch of 4 rows. The caption read "unrolled over time: bs=3, bs=4" and every node (bs=4, ...)."""
    import shapeviz as sv

    class OverBatch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.GRUCell(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.zeros(x.shape[1], 3)
            for row in x.unbind(0):
                h = self.cell(row, h)
            return h

    src = sv.unroll(sv.trace(OverBatch(), torch.randn(3, 4, 8), inputs_dims="bs T emb", ops=True)).source
    assert "unrolled over its calls, one per item of bs: bs=3, each call&#x27;s batch 4" in src
    assert "bs=4" not in src and "h (batch=4, h=3)" in src


def test_phases_are_told_apart_by_the_line_that_called() -> None:
    src = unroll(_flow_trace("phases")).source
    assert "phase A: calls 0-3, called from models.py:" in src and "_, state = net(get_input(), state)" in src
    assert "phase B: calls 4-9, called from models.py:" in src and "y, state = net(get_input(), state)" in src
    lab = labels(src)
    assert lab["x_0"].startswith("input @ call 0  (A)") and lab["x_6"].startswith("input @ call 9  (B)")  # column 6


def test_hand_written_layer_stack_joins_each_step_and_names_the_handed_state() -> None:
    src = unroll(_flow_trace("layer_stack")).source
    ups = {(a, b) for a, b, attrs in visible_edges(src) if a.startswith("p1_x_") and b.startswith("p0_y_")}
    assert ups == {(f"p1_x_{t}", f"p0_y_{t}") for t in range(5)}  # layer1's output[t] is layer2's input[t]
    lab = labels(src)
    assert "h_0 = h_n of layer1" in lab["p1_l0f_l"]


def test_hand_written_loop_over_packed_data_shows_each_calls_batch() -> None:
    src = unroll(_flow_trace("cell_packed_loop")).source
    lab = labels(src)
    assert [re.search(r"h \(bs=(\d)", lab[f"l0f_{t}"])[1] for t in range(5)] == ["3", "3", "2", "1", "1"]
    assert [t for t in range(5) if "1 row fewer" in lab[f"l0f_{t}"]] == [1, 2]  # the batch shrinks after t=1, 2
    assert "h_1 (bs=1, h=6)" in lab["l0f_r"]  # the last call's state


def test_phases_are_one_per_calling_line_even_when_lines_alternate() -> None:
    import shapeviz as sv

    cell = nn.RNNCell(2, 3)

    def alternate(x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(1, 3)
        for t in range(0, 6, 2):
            h = cell(x[t], h)  # the even steps
            h = cell(x[t + 1], h)  # the odd steps
        return h

    [panel] = panels_from_trace(sv.trace(alternate, torch.randn(6, 1, 2)))
    assert [st.phase for st in panel.steps] == [0, 1, 0, 1, 0, 1] and len(panel.phases) == 2
    assert "# the even steps" in panel.phases[0] and "# the odd steps" in panel.phases[1]
    assert "phase A: 3 calls from 0 to 4" in unroll(sv.trace(alternate, torch.randn(6, 1, 2))).source


def test_a_trace_with_many_recurrent_modules_draws_the_first_and_says_what_it_left_out() -> None:
    import shapeviz as sv
    from shapeviz.render.unrolled import MAX_PANELS

    class Stack(torch.nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.rnns = torch.nn.ModuleList(torch.nn.GRU(4, 4) for _ in range(n))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for rnn in self.rnns:
                x, _ = rnn(x)
            return x

    def source(n: int) -> str:
        return sv.unroll(sv.trace(Stack(n), torch.zeros(3, 2, 4))).source

    few, many, more = source(MAX_PANELS), source(20), source(100)
    assert few.count("subgraph cluster_") == many.count("subgraph cluster_") == MAX_PANELS
    assert "not drawn" not in few
    assert f"… {20 - MAX_PANELS} more recurrent modules, not drawn: rnns.{MAX_PANELS} … rnns.19" in many
    assert f"rnns.{MAX_PANELS - 1}: GRU(4, 4)" in many and "rnns.19: GRU" not in many
    assert len(more.splitlines()) == len(many.splitlines())  # O(1) DOT in the number of modules


class ThreeStackedCells(nn.Module):
    """Three cells stacked in one loop over x's steps: each feeds the next its h every step."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = nn.LSTMCell(8, 16), nn.LSTMCell(16, 16), nn.GRUCell(16, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bs = x.shape[1]
        h1 = c1 = h2 = c2 = torch.zeros(bs, 16)
        h3, outs = torch.zeros(bs, 12), []
        for xt in x:
            h1, c1 = self.c1(xt, (h1, c1))
            h2, c2 = self.c2(h1, (h2, c2))
            h3 = self.c3(h2, h3)
            outs.append(h3)
        return torch.stack(outs)


def _caption_of(src: str, cluster: int) -> list[str]:
    body = src.split(f"subgraph cluster_{cluster} {{")[1]
    label = re.search(r'label=<(.*?)<BR ALIGN="LEFT"/>>', body, re.S)
    assert label is not None, body[:300]
    return [ln.replace("\u00a0", " ") for ln in label.group(1).split('<BR ALIGN="LEFT"/>')]


def test_a_middle_panels_caption_stays_left_of_the_links_crossing_it() -> None:
    """The middle cell's panel is entered from below and left from above: links cross both its edges, so its
    caption is wrapped to the width of the left column (a shape never broken); the others keep one line."""
    import shapeviz as sv

    src = sv.unroll(sv.trace(ThreeStackedCells(), torch.randn(4, 3, 8))).source
    first, middle, last = (_caption_of(src, n) for n in (0, 1, 2))
    assert middle[0] == "c2: LSTMCell(16, 16)" and all(len(ln) <= 30 for ln in middle), middle
    assert "  input (bs=3, emb=16)," in middle, middle
    assert any(len(ln) > 30 for ln in first) and any(len(ln) > 30 for ln in last)
