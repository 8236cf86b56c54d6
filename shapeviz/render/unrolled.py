"""Unrolled-time diagrams of recurrent layers and cells, as Graphviz DOT.

>>> import torch.nn as nn
>>> d = unroll(nn.GRU(10, 20, num_layers=2, bidirectional=True), T=4, bs=3)
>>> "h_n[3] = layer 1, backward" in d.source, "(bs=3, h=20)" in d.source
(True, True)

Time runs left to right, layers are stacked bottom to top, a bidirectional layer has a forward and
a backward lane. Every tensor is drawn with its named shape, read from
:class:`~shapeviz.core.model.Conventions` (never re-derived here). Long sequences collapse to the
first and last ``max_steps // 2`` steps around an ellipsis column, so the DOT text has the same size
for T=10 and T=10**6. The output is deterministic (ids come from row and column positions).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import torch.nn as nn

from shapeviz._errors import SpecError
from shapeviz.core.dimensions import format_named
from shapeviz.core.model import Conventions, conventions
from shapeviz.render.backend import FONT, Diagram
from shapeviz.render.caps import MAX_CELLS, check_size, column_count
from shapeviz.render.lanes import lanes, panels_from_trace
from shapeviz.render.panels import PHASES, Feed, Link, Panel, caption_lines, fed_rows, stacked, whole_output

__all__ = ["DEFAULT_MAX_STEPS", "MAX_CELLS", "Panel", "check_size", "column_count", "panels_from_trace",
           "step_columns", "to_dot", "unroll"]

DEFAULT_MAX_STEPS = 6
"""Sequences longer than this are drawn as first k, ``× (T − 2k) steps``, last k (k = max_steps // 2), when
that hides at least 2 steps."""

_FONT = FONT  # Arial metrics in both backends; SVGs get a fallback stack (see render/backend.py)
_ELLIPSIS = "..."
"""ASCII, not "\u22ef": every backend's fonts have it (graphviz-pure drew "\u22ef" as an empty box)."""
_COLORS = {"in": "#e3f1e3", "out": "#efe3f7", "cat": "#f4f0d8", "fwd": "#dbe8f7", "bwd": "#fbe3d0",
           "cell": "#dbe8f7", "phase": "#d9f0e9"}
_LINK = "#6b6b6b"  # edges between lanes
_BACK = "#b03a2e"  # an output fed back as the next step's input
_EDGE = {"fwd": "#2a5d9f", "bwd": "#b4581c", "cell": "#2a5d9f"}
_DIRECTION = ("forward", "backward")
_ARROW = ("→", "←")
_FROM = {Feed.DATA: "not from a step's output", Feed.TOKEN: "a token from step {}'s output",
         Feed.STATE: "from step {}'s h (no token)", Feed.BACK: "from step {}'s output"}
"""The row under a step's input that says where it came from."""
_STACK = "layers*D"  # the name Conventions gives the stacked (layers*D) dim of h_0/h_n


@dataclass(frozen=True)
class _Col:
    """One drawn time column: a step (``t`` its label) or the ellipsis of skipped steps."""

    t: str
    gap: str = ""  # for the ellipsis column: how many steps it stands for ("994", "T − 3")


def step_columns(T: int | None, max_steps: int = DEFAULT_MAX_STEPS) -> list[_Col]:
    """The columns drawn for ``T`` steps: all of them, or first k + ellipsis + last k.

    >>> [c.t or "× " + c.gap for c in step_columns(1000, 6)]
    ['0', '1', '2', '× 994', '997', '998', '999']
    >>> [c.t or "× " + c.gap for c in step_columns(7, 6)]  # one hidden step would save nothing
    ['0', '1', '2', '3', '4', '5', '6']
    >>> [c.t or "× " + c.gap for c in step_columns(None)]
    ['0', '1', '× (T − 3)', 'T−1']
    """
    if T is None:
        return [_Col("0"), _Col("1"), _Col("", "(T − 3)"), _Col("T−1")]
    k = max_steps // 2
    if T - 2 * k < 2:  # an ellipsis must hide at least 2 steps: hiding one saves nothing
        return [_Col(str(t)) for t in range(T)]
    return ([_Col(str(t)) for t in range(k)] + [_Col("", str(T - 2 * k))]
            + [_Col(str(t)) for t in range(T - k, T)])


# ------------------------------------------------------------------ entry point
def unroll(obj: Any, T: int | None = None, bs: int | None = None, max_steps: int | None = None,
           *, batched: bool = True) -> Diagram:
    """Draw ``obj`` unrolled over time: a recurrent module, a :class:`Conventions` or a ``Trace``.

    >>> import torch.nn as nn
    >>> src = unroll(nn.GRU(10, 20, batch_first=True), T=5, bs=3).source
    >>> "input[:, 4]" in src, "(bs=3, emb=10)" in src, "(bs=3, T=5, D*h=20)" in src
    (True, True, True)

    From a trace the recorded T and bs are used (a cell called in a loop is drawn unrolled over
    its calls). ``batched=False`` draws the unbatched forms (no ``bs`` dim).
    """
    if max_steps is None:
        max_steps = DEFAULT_MAX_STEPS
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 2:
        raise SpecError(f"max_steps must be an int >= 2, got {max_steps!r}")
    for name, v in (("T", T), ("bs", bs)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise SpecError(f"{name} must be a positive int or None, got {v!r}")
    if bs is not None and not batched:
        raise SpecError("bs was given with batched=False; unbatched inputs have no bs dim")
    if isinstance(obj, (nn.Module, Conventions)):
        conv = conventions(obj)  # SpecError for a module that is not recurrent
        panels, links = [Panel(conv, T, bs, batched)], []
        name = conv.kind
    elif hasattr(obj, "calls"):
        if T is not None or bs is not None or not batched:
            raise SpecError("unroll(trace): T, bs and batching come from the trace; do not pass them")
        panels, links = lanes(obj)
        name = "trace"
    else:
        raise SpecError(f"unroll() takes a recurrent nn.Module, a Conventions or a Trace, "
                        f"got {type(obj).__name__}")
    return Diagram(to_dot(panels, max_steps, links), name=name)


# ------------------------------------------------------------------ DOT building blocks
def _h(text: str) -> str:
    return escape(text, quote=True)


def _table(header: str, rows: Sequence[tuple[str, str]], color: str, *, bold: bool = True,
           border: int = 1, header_port: str = "") -> str:
    """An HTML-like label: a coloured header and one row per (port, text)."""
    hp = f' PORT="{header_port}"' if header_port else ""
    head = f"<B>{_h(header)}</B>" if bold else _h(header)
    cells = [f'<TR><TD BGCOLOR="{color}"{hp}>{head}</TD></TR>']
    for port, text in rows:
        p = f' PORT="{port}"' if port else ""
        cells.append(f"<TR><TD{p}>{_h(text)}</TD></TR>")
    return (f'<<TABLE BORDER="0" CELLBORDER="{border}" CELLSPACING="0" CELLPADDING="3">'
            + "".join(cells) + "</TABLE>>")


def _plural(n: str) -> str:
    return f"× {n} step" if n == "1" else f"× {n} steps"


class _Dot:
    """Accumulates the lines of one panel; ids are prefixed so panels can share a graph."""

    def __init__(self, prefix: str) -> None:
        self.p = prefix
        self.lines: list[str] = []

    def node(self, nid: str, label: str, **attrs: str) -> str:
        a = "".join(f' {k}="{v}"' for k, v in attrs.items())
        self.lines.append(f"{self.p}{nid} [label={label}{a}];")
        return nid

    def edge(self, a: str, b: str, **attrs: str) -> None:
        at = "".join(f' {k}="{v}"' for k, v in attrs.items())
        self.lines.append(f"{self.p}{a} -> {self.p}{b}" + (f" [{at.strip()}]" if at else "") + ";")

    def same_rank(self, ids: Sequence[str]) -> None:
        self.lines.append("{rank=same; " + " ".join(f"{self.p}{i};" for i in ids) + "}")


def _strip(exprs: Sequence[str], *drop: str) -> tuple[str, ...]:
    return tuple(e for e in exprs if e not in drop)


# ------------------------------------------------------------------ one panel
def _panel_lines(panel: Panel, prefix: str, max_steps: int, entering: str = "",
                 fed: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """DOT lines of one panel and its caption lines (``entering``: where its h_0 came from; ``fed``:
    other lanes' whole results its input was computed from)."""
    c, T, bs, batched = panel.conv, panel.T, panel.bs, panel.batched
    dims = c.dims(batched=batched)
    b = c.bindings(T, bs)
    cols = step_columns(T, max_steps)
    n_layers = 1 if c.cell else c.num_layers
    D = 1 if c.cell else c.D
    lstm = c.is_lstm
    flag = c.layout.flag_note  # "batch_first=True" beside a batch-first layer's input and output
    dot = _Dot(prefix)

    def named(exprs: Sequence[str]) -> str:
        return format_named(exprs, b)

    # per-step shapes, read from the conventions' dims
    x_step = _strip(dims["input"], "T")
    h_key, c_key = ("h_1", "c_1") if c.cell else ("h_n", "c_n")
    h_step = _strip(dims["h_0"], _STACK)
    c_step = _strip(dims["c_0"], _STACK) if lstm else ()
    out_step = h_step if c.cell else _strip(dims["output"], "T")
    t_pos = dims["input"].index("T") if "T" in dims["input"] else 0

    def index_expr(name: str, t: str) -> str:
        if c.cell:
            return f"{name} @ t={t}"
        return name + "[" + ", ".join([":"] * t_pos + [t]) + "]"

    state_rows: list[tuple[str, str]] = [("h", f"h {named(h_step)}")]
    if lstm:
        state_rows.append(("c", f"c {named(c_step)}"))
    ports = ("h", "c") if lstm else ("h",)
    over = bool(panel.steps) and not c.cell  # a layer unrolled over its one-step calls
    marks = over or any(st.feed.fed_back for st in panel.steps)
    ends = panel.ends()

    def step_of(t: str) -> Any:
        return panel.steps[int(t)] if panel.steps else None

    def at(t: str) -> tuple[Any, dict[str, int | None], str]:
        """This column's step, bindings (a packed step binds bs to its batch size) and data rows."""
        bt = panel.batch_size(int(t)) if panel.runs else None
        if bt is None:
            return step_of(t), b, ""
        start = panel.offset(int(t))
        return step_of(t), {**b, "bs": bt}, "" if c.cell else f"[{start}:{start + bt}]"

    # ---- rows, bottom to top: input, lanes (+ cat between bidirectional layers), output
    rows: list[tuple[str, int, int]] = [("in", -1, -1)]
    for layer in range(n_layers):
        for d in range(D):
            rows.append(("lane", layer, d))
        if D == 2 and layer < n_layers - 1:
            rows.append(("cat", layer, -1))
    rows.append(("out", -1, -1))

    def rid(kind: str, layer: int, d: int) -> str:
        return {"in": "x", "out": "y", "cat": f"k{layer}"}.get(kind, f"l{layer}{'fb'[d]}")

    def cid(r: tuple[str, int, int], i: int) -> str:
        return f"{rid(*r)}_{i}"

    left: list[str] = []
    right: list[str] = []
    for r in rows:
        kind, layer, d = r
        row_ids: list[str] = []
        # left margin: row header (in/out/cat) or the state entering/leaving the lane
        if kind == "in":
            lines = [panel.step_in or named(dims["input"])]
            if flag:
                lines.append(flag)
            hdr = "input (each step)" if c.cell else "input"
            if over:
                hdr, lines = "input (each call)", [panel.steps[0].inp]
            if panel.runs and not c.cell:
                lines = [f"data ({panel.rows()}, {named(x_step[-1:]).strip('(,)')})"]
            lines = list(lines) + list(fed)
            row_ids.append(dot.node("x_l", _table(hdr, [("", s) for s in lines], _COLORS["in"]),
                                    shape="plain"))
        elif kind == "out":
            if panel.step_out:
                hdr, lines = "step output (each step)", [panel.step_out]
            elif c.cell:
                hdr, lines = "h_1 (each step)", [named(dims["h_1"])]
            elif over:
                hdr, lines = "output (each call)", [panel.steps[0].out]
            elif panel.runs:
                hdr, lines = "output (packed)", [f"data ({panel.rows()}, {named(out_step[-1:]).strip('(,)')})"]
            else:
                hdr, lines = "output", [named(dims["output"])]
                if flag:
                    lines.append(flag)
                if D == 2:
                    lines.append("each step = cat(forward, backward)")
            row_ids.append(dot.node("y_l", _table(hdr, [("", s) for s in lines], _COLORS["out"]),
                                    shape="plain"))
        elif kind == "cat":
            row_ids.append(dot.node(f"k{layer}_l", _table(
                f"layer {layer} output = layer {layer + 1} input",
                [("", named(out_step)), ("", "each step = cat(forward, backward)")], _COLORS["cat"]), shape="plain"))
        else:
            label = _state_node(c, layer, d, left_side=True, named=named, h_step=h_step, c_step=c_step,
                                h_key=h_key, c_key=c_key)
            if entering and layer == 0 and d == 0:
                label = label.replace("</TABLE>>", f'<TR><TD><I>{_h(entering)}</I></TD></TR></TABLE>>')
            row_ids.append(dot.node(f"{rid(*r)}_l", label, shape="plain"))
        left.append(row_ids[0])
        # the time columns
        for i, col in enumerate(cols):
            nid = cid(r, i)
            if col.gap:
                row_ids.append(dot.node(nid, _gap_label(kind, col.gap, ports), shape="plain",
                                        group=f"c{i}"))
                continue
            st, bt, rows_of = at(col.t)
            phase = f"  ({PHASES[st.phase % len(PHASES)]})" if panel.phases and st is not None else ""
            if kind == "in":
                head, text = index_expr("input", col.t), panel.step_in or format_named(x_step, bt)
                if over:
                    head, text = f"input @ call {col.t}", st.inp
                elif rows_of:
                    head = f"input.data{rows_of}"
                cells = [("", text)]
                if marks:
                    cells.append(("", _FROM[st.feed].format(int(col.t) - 1)))
                label = _table(head + phase, cells, _COLORS["in"], bold=False)
            elif kind == "out":
                name = "h_1" if c.cell else "output"
                head, text = index_expr(name, col.t), format_named(out_step, bt)
                if panel.step_out:
                    head, text = index_expr("output", col.t), panel.step_out
                if over:
                    head, text = f"output @ call {col.t}", st.out
                elif rows_of:
                    head = f"output.data{rows_of}"
                label = _table(head, [("", text)], _COLORS["out"], bold=False)
            elif kind == "cat":
                label = _table(f"cat(→, ←)  t={col.t}", [("", named(out_step))], _COLORS["cat"],
                               bold=False)
            else:
                who = c.kind if c.cell else f"layer {layer}" + (f" {_ARROW[d]}" if D == 2 else "")
                color = _COLORS["cell" if c.cell else ("fwd", "bwd")[d]]
                if phase and st.phase % 2:
                    color = _COLORS["phase"]
                cells = state_rows
                if panel.runs:
                    cells = [("h", f"h {format_named(h_step, bt)}")]
                    if lstm:
                        cells.append(("c", f"c {format_named(c_step, bt)}"))
                    k = ends.get(int(col.t), 0)  # every cell keeps this row, so the lane stays level
                    if c.cell:  # a hand-written loop over shrinking batches: what the calls show
                        cells.append(("", f"next call: {k} row{'s' if k > 1 else ''} fewer" if k and
                                      int(col.t) + 1 < (panel.T or 0) else " "))
                    else:
                        cells.append(("", f"batch_sizes[{col.t}] = {bt['bs']}"))
                        what = "h_n leaves" if d == 0 else "h_0 enters"
                        cells.append(("", f"{what}: {k} seq{'s' if k > 1 else ''} of length {int(col.t) + 1}"
                                      if k else " "))
                when = f"call {col.t}" if over else f"t={col.t}"
                label = _table(f"{who}  {when}", cells, color)
            row_ids.append(dot.node(nid, label, shape="plain", group=f"c{i}"))
        # right margin: the state leaving (forward) or entering (backward) the lane
        if kind == "lane":
            last = {**b, "bs": panel.batch_size((panel.T or 1) - 1)} if panel.runs and c.cell else b
            row_ids.append(dot.node(f"{rid(*r)}_r", _state_node(c, layer, d, left_side=False,
                                                                named=lambda e, s=last: format_named(e, s),
                                                                h_step=h_step,
                                                                c_step=c_step, h_key=h_key,
                                                                c_key=c_key), shape="plain"))
            right.append(row_ids[-1])
        dot.same_rank(row_ids)
        # recurrence along the lane. A backward lane's edges run right to left; they are declared
        # that way with constraint=false plus an invisible left-to-right edge for the order
        # (dir=back on flat edges with ports loses its arrowhead in Graphviz 2.43).
        if kind == "lane":
            color = _EDGE["cell" if c.cell else ("fwd", "bwd")[d]]
            g = f"_{_gap_index(cols)}"
            for a, bnode in itertools.pairwise(row_ids):
                attrs = {"color": color}
                if a.endswith(g) or bnode.endswith(g):
                    attrs["style"] = "dashed"
                for port in ports:
                    if d == 0:
                        dot.edge(f"{a}:{port}:e", f"{bnode}:{port}:w", **attrs)
                    else:
                        dot.edge(f"{bnode}:{port}:w", f"{a}:{port}:e", constraint="false", **attrs)
                if d == 1:
                    dot.edge(a, bnode, style="invis")
        else:  # keep header + columns in order
            for a, bnode in itertools.pairwise(row_ids):
                dot.edge(a, bnode, style="invis")

    # ---- data flowing up each column
    for i, col in enumerate(cols):
        if col.gap:  # the ellipsis column: no data edges, just a straight invisible spine
            for j in range(1, len(rows)):
                dot.edge(cid(rows[j], i), cid(rows[j - 1], i), style="invis", weight="8")
            continue
        style: dict[str, str] = {}
        for j, r in enumerate(rows):
            kind, layer, d = r
            # rankdir=TB with the top row first: data edges are declared downwards, drawn upwards
            if kind == "lane":
                if layer == 0:
                    src = rows[0]
                elif D == 2:
                    src = ("cat", layer - 1, -1)
                else:
                    src = ("lane", layer - 1, 0)
                weight = "8" if rows.index(src) == j - 1 else "0"
                dot.edge(cid(r, i), cid(src, i), dir="back", weight=weight, **style)
            elif kind in ("cat", "out"):
                top = layer if kind == "cat" else n_layers - 1
                for dd in range(D):
                    src = ("lane", top, dd)
                    weight = "8" if rows.index(src) == j - 1 else "0"
                    dot.edge(cid(r, i), cid(src, i), dir="back", weight=weight, **style)
            if j > 0 and not _adjacent_edge(rows, j):  # keep the column straight
                dot.edge(cid(r, i), cid(rows[j - 1], i), style="invis", weight="8")
    # an output fed back as the next step's input (greedy decoding): from output t-1 to input t
    for i, col in enumerate(cols):
        st = step_of(col.t) if col.t else None
        if st is not None and st.feed.fed_back and i > 0 and not cols[i - 1].gap:
            what = {Feed.TOKEN: "token", Feed.STATE: "h"}.get(st.feed)
            label = {"label": what, "fontsize": "10", "fontcolor": _BACK} if what else {}
            dot.edge(f"{cid(rows[-1], i - 1)}:e", f"{cid(rows[0], i)}:w", color=_BACK, style="dashed",
                     weight="0", penwidth="1.4", **label)
    # keep the margins aligned
    for side in (left, right):
        for a, bnode in itertools.pairwise(side):
            dot.edge(bnode, a, style="invis")

    caption = caption_lines(panel, dims, b)
    return dot.lines, caption


def _gap_index(cols: Sequence[_Col]) -> int:
    return next((i for i, col in enumerate(cols) if col.gap), -1)


def _adjacent_edge(rows: Sequence[tuple[str, int, int]], j: int) -> bool:
    """Whether a real edge already joins row j-1 to row j in every column."""
    lower, upper = rows[j - 1], rows[j]
    if upper[0] == "lane":
        if upper[1] == 0:
            return lower[0] == "in"
        return lower[0] in ("cat", "lane") and (lower[0] == "cat" or lower[1] == upper[1] - 1)
    if upper[0] in ("cat", "out"):
        return lower[0] == "lane"
    return False


def _gap_label(kind: str, gap: str, ports: Sequence[str]) -> str:
    if kind == "lane":
        # same rows and borders as a step cell (borders transparent), so the lane edges stay level
        rows = "".join(f'<TR><TD PORT="{p}" COLOR="transparent">{_ELLIPSIS}</TD></TR>' for p in ports)
        return ('<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">'
                f'<TR><TD COLOR="transparent"> </TD></TR>{rows}</TABLE>>')
    note = f"<TR><TD><I>{_h(_plural(gap))}</I></TD></TR>" if kind in ("in", "out") else ""
    return (f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3">'
            f"<TR><TD>{_ELLIPSIS}</TD></TR>{note}</TABLE>>")


def _state_node(c: Conventions, layer: int, d: int, *, left_side: bool, named: Any,
                h_step: Sequence[str], c_step: Sequence[str], h_key: str, c_key: str) -> str:
    """The initial state (entering) or final state (leaving) of one lane, with its stack index."""
    entering = left_side == (d == 0)  # forward lanes start on the left, backward on the right
    if c.cell:
        h_name, c_name = ("h_0", "c_0") if entering else (h_key, c_key)
        header = "hx (initial state)" if entering else "state after the last step"
        rows = [("h", f"{h_name} {named(h_step)}")]
        if c.is_lstm:
            rows.append(("c", f"{c_name} {named(c_step)}"))
        return _table(header, rows, _COLORS["cell"])
    idx = c.state_index(layer, d)
    h_name, c_name = ("h_0", "c_0") if entering else (h_key, c_key)
    where = f"layer {layer}" + (f", {_DIRECTION[d]}" if c.D == 2 else "")
    if c.is_lstm:
        header = f"[{idx}] = {where}"
        rows = [("h", f"{h_name}[{idx}] {named(h_step)}"), ("c", f"{c_name}[{idx}] {named(c_step)}")]
    else:
        header = f"{h_name}[{idx}] = {where}"
        rows = [("h", named(h_step))]
    return _table(header, rows, _COLORS[("fwd", "bwd")[d]])


def _link_lines(panels: Sequence[Panel], links: Sequence[Link], max_steps: int) -> list[str]:
    """Edges between lanes: a state handed on (flat, left to right), an output fed up into an input."""
    out: list[str] = []

    def column(n: int, step: int | None) -> int | None:
        """The drawn column of a step of panel n (None: not drawn, inside the ellipsis)."""
        cols = step_columns(panels[n].T, max_steps)
        return next((i for i, col in enumerate(cols) if col.t == str(step)), None)

    vertical = {(ln.src, ln.dst) for ln in links if stacked(panels, ln)}
    for ln in links:
        a, b = (f"p{ln.src}_" if len(panels) > 1 else ""), (f"p{ln.dst}_" if len(panels) > 1 else "")
        if stacked(panels, ln):  # step t of the output goes up into step t of the next layer's input
            for i, col in enumerate(step_columns(panels[ln.src].T, max_steps)):
                if col.t:
                    change = f' label="{_h(_wrap(ln.change))}" fontsize=10 fontcolor="{_LINK}"' \
                        if ln.change and i == 0 else ""  # said once, beside the first step
                    out.append(f'{b}x_{i} -> {a}y_{i} [dir=back color="{_LINK}" penwidth=1.2{change}];')
            continue
        if whole_output(ln) or (ln.dst_state and (ln.src, ln.dst) in vertical):
            continue  # written in the input's (fed_rows) or h_0's header: more edges would tangle the lanes
        src_last = ln.src_step is None or ln.src_step == (panels[ln.src].T or 0) - 1
        src_state = ln.src_state and not (panels[ln.src].conv.cell and not ln.dst_state)  # a cell's h_1 row
        if src_state and src_last:
            top = (1 if panels[ln.src].conv.cell else panels[ln.src].conv.num_layers) - 1
            src = f"{a}l{top}f_r"
        else:
            i = None if ln.src_step is None else column(ln.src, ln.src_step)
            if ln.src_step is not None and i is None:
                continue
            src = f"{a}{'l0f' if src_state else 'y'}_{'l' if i is None else i}"
        if ln.dst_state and (ln.dst_step in (None, 0)):
            dst = f"{b}l0f_l"
        else:
            j = None if ln.dst_step is None else column(ln.dst, ln.dst_step)
            if ln.dst_step is not None and j is None:
                continue
            dst = f"{b}{'l0f' if ln.dst_state else 'x'}_{'l' if j is None else j}"
        label = f' label="{_h(ln.label)}" fontsize=10 fontcolor="{_LINK}"' if ln.dst_step in (None, 0) else ""
        if src.endswith("_r") and dst.endswith("_l"):  # a state handed on: same rank, left to right
            out.append(f"{{rank=same; {src}; {dst};}}")
            change = f' label="{_h(_wrap(ln.change))}" fontsize=10 fontcolor="{_LINK}"' if ln.change else ""
            out.append(f'{src}:h:e -> {dst}:h:w [color="{_LINK}" penwidth=1.6 minlen={3 if change else 2}{change}];')
        elif not src_state and not ln.dst_state and ln.src_step == ln.dst_step:  # up into the lane above
            out.append(f'{dst} -> {src} [dir=back color="{_LINK}" penwidth=1.2{label}];')
        else:
            out.append(f'{src} -> {dst} [color="{_LINK}" penwidth=1.2 constraint=false{label}];')
    return out


def _wrap(text: str) -> str:
    """An edge label's text broken before each arrow (DOT ``\\n``), so it stays narrow."""
    return text.replace(" → ", "\\n→ ")


def _label_text(lines: Sequence[str]) -> str:
    return "<" + "<BR ALIGN=\"LEFT\"/>".join(_h(s) for s in lines) + "<BR ALIGN=\"LEFT\"/>>"


def to_dot(panels: Sequence[Panel], max_steps: int = DEFAULT_MAX_STEPS, links: Sequence[Link] = ()) -> str:
    """DOT text for the panels: one graph, one cluster per panel when there are several.

    >>> import torch.nn as nn
    >>> to_dot([Panel(conventions(nn.RNN(4, 8)), T=3, bs=2)]).splitlines()[0]
    'digraph unroll {'
    """
    panels, links, hidden = _keep_panels(panels, links)
    check_size(panels, max_steps)
    out = ["digraph unroll {",
           f'graph [rankdir=TB newrank=true ordering=out nodesep=0.3 ranksep=0.45 fontname="{_FONT}" fontsize=14 '
           'labelloc=t labeljust=l outputorder=edgesfirst];',
           f'node [fontname="{_FONT}" fontsize=12];',
           f'edge [fontname="{_FONT}" arrowsize=0.7];']
    lower = {ln.src for ln in links if not ln.dst_state and (stacked(panels, ln) or (
        ln.src_step is not None and ln.src_step == ln.dst_step))}
    for n, panel in enumerate(panels):
        prefix = f"p{n}_" if len(panels) > 1 else ""
        entering = "; ".join(f"{ln.label} of {panels[ln.src].path or 'lane ' + str(ln.src)}" for ln in links
                             if ln.dst == n and ln.dst_state and ln.dst_step in (None, 0))
        lines, caption = _panel_lines(panel, prefix, max_steps, entering, fed_rows(panels, links, n))
        if len(panels) > 1:
            out.append(f"subgraph cluster_{n} {{")
            below = "labelloc=b; " if n in lower else ""  # edges leave its top: the caption goes below
            out.append(f"label={_label_text(caption)}; {below}color=\"#999999\";")
            out.extend(lines)
            out.append("}")
        else:
            out.append(f"label={_label_text(caption)};")
            out.extend(lines)
    if hidden:  # the panels left out, said in one node of their own
        out.append(f'more [label="{_h(hidden)}" shape="box" style="dashed"];')
    out.extend(_link_lines(panels, links, max_steps))
    out.append("}")
    return "\n".join(out) + "\n"


MAX_PANELS = 8
"""A trace with more recurrent modules draws its first ``MAX_PANELS`` and says what it left out (O(1) DOT)."""


def _keep_panels(panels: Sequence[Panel], links: Sequence[Link]) -> tuple[list[Panel], list[Link], str]:
    """The panels to draw, their links renumbered, and the text of the node that says what was left out."""
    if len(panels) <= MAX_PANELS:
        return list(panels), list(links), ""
    kept = [ln for ln in links if ln.src < MAX_PANELS and ln.dst < MAX_PANELS]
    left = panels[MAX_PANELS:]
    paths = [p.path for p in left if p.path]
    where = f": {paths[0]} … {paths[-1]}" if len(paths) > 1 else ""
    return (list(panels[:MAX_PANELS]), kept,
            f"… {len(left)} more recurrent modules, not drawn{where} (see the trace table)")
