"""One panel of an unrolled diagram (one recurrent module's lanes) drawn into a ``graphviz.Digraph``.

>>> import graphviz
>>> from shapeviz.core.model import Conventions
>>> g = graphviz.Digraph("unroll")
>>> draw_panel(g, Panel(Conventions("GRU", cell=True, input_size=4, hidden_size=8), T=3, bs=2), "", 6)
>>> [line.split(" [")[0].strip() for line in g.body if "GRUCell  t=1" in line]  # the cell of step 1
['l0f_1']
>>> print(g.source.splitlines()[-1])
}

The panel is a grid of :class:`Row` s (bottom to top: the input, one lane per layer and direction with a
``cat`` row between bidirectional layers, the output) by time columns (:func:`step_columns`), with a
margin on each side for the row's header or the state entering and leaving a lane. Node ids come from
row and column positions (``x_0``, ``l1b_3``, ``k0_2``, ``y_l``), so the output is deterministic;
every shape is read from the panel's :class:`~shapeviz.core.model.Conventions`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from html import escape
from typing import Any

import graphviz
import graphviz.quoting

from shapeviz.core.dimensions import format_named
from shapeviz.render.panels import PHASES, Feed, Panel, own_batch

__all__ = ["DEFAULT_MAX_STEPS", "Col", "Row", "RowKind", "UnrollGraph", "add_edge", "add_node", "draw_panel",
           "html_table", "rows_of", "same_rank", "source_rows", "step_columns"]

DEFAULT_MAX_STEPS = 6
"""Sequences longer than this are drawn as first k, ``× (T − 2k) steps``, last k (k = max_steps // 2), when
that hides at least 2 steps."""

_ELLIPSIS = "..."
"""ASCII, not "\u22ef": every backend's fonts have it (graphviz-pure drew "\u22ef" as an empty box)."""
_LANE_FILL = ("#dbe8f7", "#fbe3d0")  # forward (and a cell's), backward
_LANE_EDGE = ("#2a5d9f", "#b4581c")
_PHASE_FILL = "#d9f0e9"  # a lane's cells called from the second (fourth, …) line of your code
_BACK = "#b03a2e"  # an output fed back as the next step's input
_DIRECTION = ("forward", "backward")
_ARROW = ("→", "←")
_FROM = {Feed.DATA: "not from a step's output", Feed.TOKEN: "a token from step {}'s output",
         Feed.STATE: "from step {}'s h (no token)", Feed.BACK: "from step {}'s output"}
"""The row under a step's input that says where it came from."""
_STACK = "layers*D"  # the name Conventions gives the stacked (layers*D) dim of h_0/h_n


@dataclass(frozen=True)
class Col:
    """One drawn time column: a step (``t`` its label) or the ellipsis of skipped steps."""

    t: str
    gap: str = ""  # for the ellipsis column: how many steps it stands for ("994", "T − 3")


def step_columns(T: int | None, max_steps: int = DEFAULT_MAX_STEPS) -> list[Col]:
    """The columns drawn for ``T`` steps: all of them, or first k + ellipsis + last k.

    >>> [c.t or "× " + c.gap for c in step_columns(1000, 6)]
    ['0', '1', '2', '× 994', '997', '998', '999']
    >>> [c.t or "× " + c.gap for c in step_columns(7, 6)]  # one hidden step would save nothing
    ['0', '1', '2', '3', '4', '5', '6']
    >>> [c.t or "× " + c.gap for c in step_columns(None)]
    ['0', '1', '× (T − 3)', 'T−1']
    """
    if T is None:
        return [Col("0"), Col("1"), Col("", "(T − 3)"), Col("T−1")]
    k = max_steps // 2
    if T - 2 * k < 2:  # an ellipsis must hide at least 2 steps: hiding one saves nothing
        return [Col(str(t)) for t in range(T)]
    return ([Col(str(t)) for t in range(k)] + [Col("", str(T - 2 * k))]
            + [Col(str(t)) for t in range(T - k, T)])


class RowKind(Enum):
    """What a row of a panel draws; its value starts the row's node ids.

    >>> [r.kind.value for r in rows_of(2, 2)]
    ['x', 'l', 'l', 'k', 'l', 'l', 'y']
    """

    INPUT = "x"
    LANE = "l"  # one layer and direction: the recurrence runs along it
    CAT = "k"  # between bidirectional layers: cat(forward, backward), the next layer's input
    OUTPUT = "y"


_FILL = {RowKind.INPUT: "#e3f1e3", RowKind.OUTPUT: "#efe3f7", RowKind.CAT: "#f4f0d8"}


@dataclass(frozen=True)
class Row:
    """One row of a panel: its kind, and for a lane (or a cat row) the layer and direction.

    >>> Row(RowKind.LANE, 1, 1).id, Row(RowKind.CAT, 0).cell(3), Row(RowKind.INPUT).id
    ('l1b', 'k0_3', 'x')
    """

    kind: RowKind
    layer: int = -1
    d: int = -1  # direction: 0 forward, 1 backward (torch's index in layer*D + direction)

    @functools.cached_property
    def id(self) -> str:
        if self.kind is RowKind.LANE:
            return f"l{self.layer}{'fb'[self.d]}"
        return f"k{self.layer}" if self.kind is RowKind.CAT else self.kind.value

    def cell(self, i: int) -> str:
        """The node id of this row's cell in drawn column ``i``."""
        return f"{self.id}_{i}"


def rows_of(n_layers: int, D: int) -> list[Row]:
    """The rows bottom to top: input, lanes (a cat row between bidirectional layers), output."""
    rows = [Row(RowKind.INPUT)]
    for layer in range(n_layers):
        rows += [Row(RowKind.LANE, layer, d) for d in range(D)]
        if D == 2 and layer < n_layers - 1:
            rows.append(Row(RowKind.CAT, layer))
    return [*rows, Row(RowKind.OUTPUT)]


def source_rows(rows: Sequence[Row], j: int) -> list[Row]:
    """The rows whose cells feed row ``j``'s cell in the same column (drawn as edges up the column).

    >>> rows = rows_of(2, 2)
    >>> [r.id for r in source_rows(rows, 4)], [r.id for r in source_rows(rows, 6)]
    (['k0'], ['l1f', 'l1b'])
    """
    r = rows[j]
    D = 2 if any(x.d == 1 for x in rows) else 1
    if r.kind is RowKind.LANE:
        if r.layer == 0:
            return [rows[0]]
        return [Row(RowKind.CAT, r.layer - 1)] if D == 2 else [Row(RowKind.LANE, r.layer - 1, 0)]
    if r.kind in (RowKind.CAT, RowKind.OUTPUT):
        top = r.layer if r.kind is RowKind.CAT else max(x.layer for x in rows)
        return [Row(RowKind.LANE, top, d) for d in range(D)]
    return []


# ------------------------------------------------------------------ HTML-like labels
def _h(text: str) -> str:
    return escape(text, quote=True)


def html_table(header: str, rows: Sequence[tuple[str, str]], color: str, *, bold: bool = True,
               border: int = 1, header_port: str = "") -> str:
    """An HTML-like label: a coloured header and one row per (port, text); the texts are escaped.

    >>> html_table("a<b", [("h", "x")], "#fff").split("<TR>")[1:]
    ['<TD BGCOLOR="#fff"><B>a&lt;b</B></TD></TR>', '<TD PORT="h">x</TD></TR></TABLE>>']
    """
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


def _strip(exprs: Sequence[str], *drop: str) -> tuple[str, ...]:
    return tuple(e for e in exprs if e not in drop)


# ------------------------------------------------------------------ what one panel shows
class _View:
    """A panel's shapes read once from its conventions: the whole tensors (``dims``) and one step's."""

    def __init__(self, panel: Panel, cols: list[Col]) -> None:
        self.panel, self.cols = panel, cols
        c = self.c = panel.conv
        self.dims, self.b = own_batch(panel, c.dim_exprs(batched=panel.batched), c.bindings(panel.T, panel.bs))
        self.n_layers = 1 if c.cell else c.num_layers
        self.D = 1 if c.cell else c.D
        self.lstm = c.is_lstm
        self.flag = c.layout.flag_note  # "batch_first=True" beside a batch-first layer's input and output
        self.x_step = _strip(self.dims["input"], "T")
        self.h_key, self.c_key = ("h_1", "c_1") if c.cell else ("h_n", "c_n")
        self.h_step = _strip(self.dims["h_0"], _STACK)
        self.c_step = _strip(self.dims["c_0"], _STACK) if self.lstm else ()
        # a layer declared with sv.recurrent: its state may have no stack, its output may be undeclared
        self.unstacked = not c.cell and c.declaration is not None and _STACK not in self.dims["h_0"]
        self.no_output = not c.cell and "output" not in self.dims
        self.out_step = self.h_step if c.cell else _strip(self.dims.get("output", ()), "T")
        self.t_pos = self.dims["input"].index("T") if "T" in self.dims["input"] else 0
        self.ports = ("h", "c") if self.lstm else ("h",)
        self.over = bool(panel.steps) and not c.cell  # a layer unrolled over its one-step calls
        self.marks = self.over or any(st.feed.fed_back for st in panel.steps)
        self.ends = panel.ends()

    def named(self, exprs: Sequence[str]) -> str:
        return format_named(exprs, self.b)

    def index_expr(self, name: str, t: str) -> str:
        if self.c.cell:
            return f"{name} @ t={t}"
        return name + "[" + ", ".join([":"] * self.t_pos + [t]) + "]"

    def step_of(self, t: str) -> Any:
        return self.panel.steps[int(t)] if self.panel.steps else None

    def at(self, t: str) -> tuple[Any, dict[str, int | None], str]:
        """This column's step, bindings (a packed step binds bs to its batch size) and data rows."""
        p = self.panel
        bt = p.batch_size(int(t)) if p.runs else None
        if bt is None:
            return self.step_of(t), self.b, ""
        start = p.offset(int(t))
        return self.step_of(t), {**self.b, "bs": bt}, "" if self.c.cell else f"[{start}:{start + bt}]"

    def state_rows(self, bt: dict[str, int | None]) -> list[tuple[str, str]]:
        rows = [("h", f"h {format_named(self.h_step, bt)}")]
        if self.lstm:
            rows.append(("c", f"c {format_named(self.c_step, bt)}"))
        return rows


@functools.lru_cache(maxsize=1024)
def _attr_text(items: tuple[tuple[str, str], ...]) -> str:
    return graphviz.quoting.attr_list(attributes=list(items))


class UnrollGraph(graphviz.Digraph):
    """A ``graphviz.Digraph`` that remembers what the package's own quoting made of an id or of an attribute
    list it saw before: a diagram repeats a few hundred ids and a dozen attribute lists (``style=invis``,
    ``dir=back weight=8``) in thousands of statements. The DOT is the same as a plain Digraph's.

    >>> g = UnrollGraph("g")
    >>> g.edge("a:h:e", "b c", _attributes=[("style", "invis")])
    >>> g.body
    ['\\ta:h:e -> "b c" [style=invis]\\n']
    """

    _quote = staticmethod(functools.lru_cache(maxsize=4096, typed=True)(graphviz.quoting.quote))
    _quote_edge = staticmethod(functools.lru_cache(maxsize=4096, typed=True)(graphviz.quoting.quote_edge))

    @staticmethod
    def _attr_list(label: str | None = None, kwargs: Any = None, attributes: Any = None) -> str:
        if label is None and not kwargs and type(attributes) is list and all(
                type(k) is str and type(v) is str for k, v in attributes):  # (never an nohtml() value: not cached)
            return _attr_text(tuple(attributes))
        return graphviz.quoting.attr_list(label, kwargs=kwargs, attributes=attributes)


def add_node(graph: graphviz.Digraph, name: str, label: str, **attrs: str) -> None:
    """``graph.node``, the attributes written in the order given (graphviz writes keyword arguments sorted;
    the order of first use of an attribute moves some of graphviz-pure's edges by a fraction of a point)."""
    graph.node(name, label, _attributes=list(attrs.items()))


def add_edge(graph: graphviz.Digraph, tail: str, head: str, **attrs: str) -> None:
    """``graph.edge``, the attributes written in the order given (see :func:`add_node`)."""
    graph.edge(tail, head, _attributes=list(attrs.items()))


def same_rank(graph: graphviz.Digraph, names: Sequence[str]) -> None:
    """A subgraph that puts ``names`` on one rank (a new graph: ``graph.subgraph()`` would copy the body)."""
    rank = UnrollGraph()
    rank.attr(rank="same")
    for name in names:
        rank.node(name)
    graph.subgraph(rank)


class _Out:
    """Writes one panel's nodes and edges into a graph; ids are prefixed so panels can share a graph."""

    def __init__(self, graph: graphviz.Digraph, prefix: str) -> None:
        self.g = graph
        self.p = prefix

    def node(self, nid: str, label: str, **attrs: str) -> str:
        add_node(self.g, self.p + nid, label, shape="plain", **attrs)
        return nid

    def edge(self, a: str, b: str, **attrs: str) -> None:
        add_edge(self.g, self.p + a, self.p + b, **attrs)

    def same_rank(self, ids: Sequence[str]) -> None:
        same_rank(self.g, [self.p + i for i in ids])


# ------------------------------------------------------------------ the left margin: a row's header
def _input_header(v: _View, fed: Sequence[str]) -> str:
    p = v.panel
    hdr, lines = ("input (each step)" if v.c.cell else "input"), [p.step_in or v.named(v.dims["input"])]
    if v.flag:
        lines.append(v.flag)
    if v.over:
        hdr, lines = "input (each call)", [p.steps[0].inp]
    if p.runs and not v.c.cell:
        lines = [f"data ({p.rows()}, {v.named(v.x_step[-1:]).strip('(,)')})"]
    return html_table(hdr, [("", s) for s in [*lines, *fed]], _FILL[RowKind.INPUT])


def _output_header(v: _View) -> str:
    p = v.panel
    if p.step_out:
        hdr, lines = "step output (each step)", [p.step_out]
    elif v.c.cell:
        hdr, lines = "h_1 (each step)", [v.named(v.dims["h_1"])]
    elif v.over:
        hdr, lines = "output (each call)", [p.steps[0].out]
    elif p.runs:
        hdr, lines = "output (packed)", [f"data ({p.rows()}, {v.named(v.out_step[-1:]).strip('(,)')})"]
    elif v.no_output:
        hdr, lines = "output", ["not declared (sv.recurrent(..., output=))"]
    else:
        hdr, lines = "output", [v.named(v.dims["output"])]
        if v.flag:
            lines.append(v.flag)
        if v.D == 2:
            lines.append("each step = cat(forward, backward)")
    return html_table(hdr, [("", s) for s in lines], _FILL[RowKind.OUTPUT])


def _cat_header(v: _View, layer: int) -> str:
    step = v.named(v.out_step)
    if v.panel.runs:  # packed: a step has batch_sizes[t] rows, not the whole batch
        step = f"each step (batch_sizes[t], {v.named(v.out_step[1:]).strip('(,)')})"
    return html_table(f"layer {layer} output = layer {layer + 1} input",
                      [("", step), ("", "each step = cat(forward, backward)")], _FILL[RowKind.CAT])


def _state_node(v: _View, row: Row, *, left_side: bool, b: dict[str, int | None]) -> str:
    """The initial state (entering) or final state (leaving) of one lane, with its stack index."""
    c, layer, d = v.c, row.layer, row.d
    entering = left_side == (d == 0)  # forward lanes start on the left, backward on the right
    h_name, c_name = ("h_0", "c_0") if entering else (v.h_key, v.c_key)
    h, cs = format_named(v.h_step, b), format_named(v.c_step, b)
    if c.cell or v.unstacked:
        header = "hx (initial state)" if entering else "state after the last step"
        rows = [("h", f"{h_name} {h}")] + ([("c", f"{c_name} {cs}")] if c.is_lstm else [])
        return html_table(header, rows, _LANE_FILL[0])
    idx = c.state_index(layer, d)
    where = f"layer {layer}" + (f", {_DIRECTION[d]}" if c.D == 2 else "")
    if c.is_lstm:
        return html_table(f"[{idx}] = {where}", [("h", f"{h_name}[{idx}] {h}"), ("c", f"{c_name}[{idx}] {cs}")],
                          _LANE_FILL[d])
    return html_table(f"{h_name}[{idx}] = {where}", [("h", h)], _LANE_FILL[d])


def _left(v: _View, row: Row, entering: str, fed: Sequence[str]) -> str:
    if row.kind is RowKind.INPUT:
        return _input_header(v, fed)
    if row.kind is RowKind.OUTPUT:
        return _output_header(v)
    if row.kind is RowKind.CAT:
        return _cat_header(v, row.layer)
    label = _state_node(v, row, left_side=True, b=v.b)
    if entering and row.layer == 0 and row.d == 0:  # where this panel's h_0 came from
        label = label.replace("</TABLE>>", f"<TR><TD><I>{_h(entering)}</I></TD></TR></TABLE>>")
    return label


# ------------------------------------------------------------------ the cells of one time column
def _gap_cell(kind: RowKind, gap: str, ports: Sequence[str]) -> str:
    if kind is RowKind.LANE:
        # same rows and borders as a step cell (borders transparent), so the lane edges stay level
        rows = "".join(f'<TR><TD PORT="{p}" COLOR="transparent">{_ELLIPSIS}</TD></TR>' for p in ports)
        return ('<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">'
                f'<TR><TD COLOR="transparent"> </TD></TR>{rows}</TABLE>>')
    note = f"<TR><TD><I>{_h(_plural(gap))}</I></TD></TR>" if kind in (RowKind.INPUT, RowKind.OUTPUT) else ""
    return (f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3">'
            f"<TR><TD>{_ELLIPSIS}</TD></TR>{note}</TABLE>>")


def _input_cell(v: _View, t: str) -> str:
    st, bt, rows_of_data = v.at(t)
    head, text = v.index_expr("input", t), v.panel.step_in or format_named(v.x_step, bt)
    if v.over:
        head, text = f"input @ call {t}", st.inp
    elif rows_of_data:
        head = f"input.data{rows_of_data}"
    cells = [("", text)]
    if v.marks:
        cells.append(("", _FROM[st.feed].format(int(t) - 1)))
    phase = f"  ({PHASES[st.phase % len(PHASES)]})" if v.panel.phases and st is not None else ""
    return html_table(head + phase, cells, _FILL[RowKind.INPUT], bold=False)


def _output_cell(v: _View, t: str) -> str:
    st, bt, rows_of_data = v.at(t)
    head, text = v.index_expr("h_1" if v.c.cell else "output", t), format_named(v.out_step, bt)
    if v.panel.step_out:
        head, text = v.index_expr("output", t), v.panel.step_out
    if v.over:
        head, text = f"output @ call {t}", st.out
    elif rows_of_data:
        head = f"output.data{rows_of_data}"
    elif v.no_output:
        head, text = f"output @ t={t}", "not declared"
    return html_table(head, [("", text)], _FILL[RowKind.OUTPUT], bold=False)


def _packed_rows(v: _View, row: Row, t: str, bt: dict[str, int | None]) -> list[tuple[str, str]]:
    """A lane cell of a shrinking batch: the state with this step's bs, and which sequences end here."""
    cells = v.state_rows(bt)
    k = v.ends.get(int(t), 0)  # every cell keeps this row, so the lane stays level
    if v.c.cell:  # a hand-written loop over shrinking batches: what the calls show
        more = k and int(t) + 1 < (v.panel.T or 0)
        cells.append(("", f"next call: {k} row{'s' if k > 1 else ''} fewer" if more else " "))
    else:
        cells.append(("", f"batch_sizes[{t}] = {bt['bs']}"))
        what = "h_n leaves" if row.d == 0 else "h_0 enters"
        cells.append(("", f"{what}: {k} seq{'s' if k > 1 else ''} of length {int(t) + 1}" if k else " "))
    return cells


def _lane_cell(v: _View, row: Row, t: str) -> str:
    st, bt, _ = v.at(t)
    who = v.c.kind if v.c.cell or v.unstacked else f"layer {row.layer}" + (f" {_ARROW[row.d]}" if v.D == 2 else "")
    color = _LANE_FILL[row.d]
    if v.panel.phases and st is not None and st.phase % 2:
        color = _PHASE_FILL
    cells = _packed_rows(v, row, t, bt) if v.panel.runs else v.state_rows(v.b)
    when = f"call {t}" if v.over else f"t={t}"
    return html_table(f"{who}  {when}", cells, color)


def _cell(v: _View, row: Row, t: str) -> str:
    if row.kind is RowKind.INPUT:
        return _input_cell(v, t)
    if row.kind is RowKind.OUTPUT:
        return _output_cell(v, t)
    if row.kind is RowKind.CAT:  # a packed step's batch is its batch_sizes[t], as the lanes' and the output's
        return html_table(f"cat(→, ←)  t={t}", [("", format_named(v.out_step, v.at(t)[1]))], _FILL[RowKind.CAT],
                          bold=False)
    return _lane_cell(v, row, t)


# ------------------------------------------------------------------ edges
def _row_edges(out: _Out, v: _View, row: Row, ids: Sequence[str]) -> None:
    """Along a row: a lane's recurrence (dashed through the ellipsis), else invisible edges for the order.

    A backward lane's edges run right to left; they are declared that way with constraint=false plus an
    invisible left-to-right edge for the order (dir=back on flat edges with ports loses its arrowhead in
    Graphviz 2.43)."""
    if row.kind is not RowKind.LANE:
        for a, b in itertools.pairwise(ids):
            out.edge(a, b, style="invis")
        return
    gap = f"_{next((i for i, col in enumerate(v.cols) if col.gap), -1)}"
    for a, b in itertools.pairwise(ids):
        attrs = {"color": _LANE_EDGE[row.d]}
        if a.endswith(gap) or b.endswith(gap):
            attrs["style"] = "dashed"
        for port in v.ports:
            if row.d == 0:
                out.edge(f"{a}:{port}:e", f"{b}:{port}:w", **attrs)
            else:
                out.edge(f"{b}:{port}:w", f"{a}:{port}:e", constraint="false", **attrs)
        if row.d == 1:
            out.edge(a, b, style="invis")


def _adjacent_edge(rows: Sequence[Row], j: int) -> bool:
    """Whether a real edge already joins row j-1 to row j in every column."""
    return rows[j - 1] in source_rows(rows, j)


def _column_edges(out: _Out, v: _View, rows: Sequence[Row]) -> None:
    """Data flowing up each column (rankdir=TB with the top row first: declared downwards, drawn upwards),
    and invisible edges that keep each column straight."""
    # per row: (its sources and each one's weight: 8 from the row just below, which keeps the column
    # straight; else 0), and whether an invisible edge to the row below is needed for that
    feeds = [([(src, "8" if rows.index(src) == j - 1 else "0") for src in source_rows(rows, j)],
              j > 0 and not _adjacent_edge(rows, j)) for j in range(len(rows))]
    for i, col in enumerate(v.cols):
        if col.gap:  # the ellipsis column: no data edges, just a straight invisible spine
            for j in range(1, len(rows)):
                out.edge(rows[j].cell(i), rows[j - 1].cell(i), style="invis", weight="8")
            continue
        for j, (row, (sources, spine)) in enumerate(zip(rows, feeds)):
            for src, weight in sources:
                out.edge(row.cell(i), src.cell(i), dir="back", weight=weight)
            if spine:
                out.edge(row.cell(i), rows[j - 1].cell(i), style="invis", weight="8")


def _feedback_edges(out: _Out, v: _View, rows: Sequence[Row]) -> None:
    """An output fed back as the next step's input (greedy decoding): from output t-1 to input t."""
    for i, col in enumerate(v.cols):
        st = v.step_of(col.t) if col.t else None
        if st is not None and st.feed.fed_back and i > 0 and not v.cols[i - 1].gap:
            what = {Feed.TOKEN: "token", Feed.STATE: "h"}.get(st.feed)
            label = {"label": what, "fontsize": "10", "fontcolor": _BACK} if what else {}
            out.edge(f"{rows[-1].cell(i - 1)}:e", f"{rows[0].cell(i)}:w", color=_BACK, style="dashed",
                     weight="0", penwidth="1.4", **label)


# ------------------------------------------------------------------ one panel
def _draw_row(out: _Out, v: _View, row: Row, entering: str, fed: Sequence[str]) -> tuple[str, str]:
    """One row: its left margin, its time columns, a lane's right margin, all on one rank; returns the
    ids of its left and right margin nodes (the right one "" for a row without one)."""
    ids = [out.node(f"{row.id}_l", _left(v, row, entering, fed))]
    for i, col in enumerate(v.cols):
        label = _gap_cell(row.kind, col.gap, v.ports) if col.gap else _cell(v, row, col.t)
        ids.append(out.node(row.cell(i), label, group=f"c{i}"))
    right = ""
    if row.kind is RowKind.LANE:  # the state leaving (forward) or entering (backward) the lane
        p = v.panel
        last = {**v.b, "bs": p.batch_size((p.T or 1) - 1)} if p.runs and v.c.cell else v.b
        right = out.node(f"{row.id}_r", _state_node(v, row, left_side=False, b=last))
        ids.append(right)
    out.same_rank(ids)
    _row_edges(out, v, row, ids)
    return ids[0], right


def draw_panel(graph: graphviz.Digraph, panel: Panel, prefix: str, max_steps: int, entering: str = "",
               fed: Sequence[str] = ()) -> None:
    """Draw ``panel`` into ``graph`` (a ``graphviz.Digraph`` or one of its subgraphs), node ids prefixed
    with ``prefix``. ``entering``: where its h_0 came from; ``fed``: other lanes' whole results its input
    was computed from (rows of its input header)."""
    v = _View(panel, step_columns(panel.T, max_steps))
    out = _Out(graph, prefix)
    rows = rows_of(v.n_layers, v.D)
    margins = [_draw_row(out, v, row, entering, fed) for row in rows]
    _column_edges(out, v, rows)
    _feedback_edges(out, v, rows)
    for side in ([m[0] for m in margins], [m[1] for m in margins if m[1]]):  # keep the margins aligned
        for a, b in itertools.pairwise(side):
            out.edge(b, a, style="invis")
