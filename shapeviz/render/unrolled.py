"""Unrolled-time diagrams of recurrent layers and cells, built as a ``graphviz.Digraph``.

>>> import torch.nn as nn
>>> d = unroll(nn.GRU(10, 20, num_layers=2, bidirectional=True), T=4, bs=3)
>>> "h_n[3] = layer 1, backward" in d.source, "(bs=3, h=20)" in d.source
(True, True)
>>> import graphviz
>>> isinstance(d.graph, graphviz.Digraph), d.source == d.graph.source  # restyle it with graphviz's own API
(True, True)

Time runs left to right, layers are stacked bottom to top, a bidirectional layer has a forward and
a backward lane. Every tensor is drawn with its named shape, read from
:class:`~shapeviz.core.model.Conventions` (never re-derived here). Long sequences collapse to the
first and last ``max_steps // 2`` steps around an ellipsis column, so the DOT text has the same size
for T=10 and T=10**6. The output is deterministic (ids come from row and column positions). The graph is
assembled with the ``graphviz`` package (its quoting, its escaping); :mod:`shapeviz.render.panel_graph`
draws each panel, this module the entry point, the clusters and the edges between lanes.
"""

from __future__ import annotations

import re
import textwrap
from collections import OrderedDict
from collections.abc import Sequence
from html import escape
from typing import Any

import graphviz
import torch.nn as nn

from shapeviz._errors import SpecError
from shapeviz.core.model import Conventions, conventions
from shapeviz.render.backend import FONT, Diagram
from shapeviz.render.caps import MAX_CELLS, check_size, column_count
from shapeviz.render.lanes import lanes, panels_from_trace
from shapeviz.render.panel_graph import (
    DEFAULT_MAX_STEPS,
    UnrollGraph,
    add_edge,
    add_node,
    draw_panel,
    same_rank,
    step_columns,
)
from shapeviz.render.panels import Link, Panel, caption_lines, fed_rows, stacked, whole_output

__all__ = ["DEFAULT_MAX_STEPS", "MAX_CELLS", "Panel", "check_size", "column_count", "panels_from_trace",
           "step_columns", "to_dot", "to_graph", "unroll"]

_LINK = "#6b6b6b"  # edges between lanes
_GRAPH = {"rankdir": "TB", "newrank": "true", "ordering": "out", "nodesep": "0.3", "ranksep": "0.45",
          "fontname": FONT, "fontsize": "14", "labelloc": "t", "labeljust": "l", "outputorder": "edgesfirst"}
_NODE = {"fontname": FONT, "fontsize": "12"}  # Arial metrics in both backends (see render/backend.py)
_EDGE = {"fontname": FONT, "arrowsize": "0.7"}


# ------------------------------------------------------------------ entry point
def unroll(obj: Any, T: int | None = None, bs: int | None = None, max_steps: int | None = None,
           *, batched: bool = True) -> Diagram:
    """Draw ``obj`` unrolled over time: a recurrent module, a :class:`Conventions` or a ``Trace``.

    >>> import torch.nn as nn
    >>> src = unroll(nn.GRU(10, 20, batch_first=True), T=5, bs=3).source
    >>> "input[:, 4]" in src, "(bs=3, emb=10)" in src, "(bs=3, T=5, D*h=20)" in src
    (True, True, True)

    From a trace the recorded T and bs are used (a cell called in a loop is drawn unrolled over
    its calls). ``batched=False`` draws the unbatched forms (no ``bs`` dim). The :class:`Diagram`'s
    ``.graph`` is the ``graphviz.Digraph`` it was built as: restyle it with graphviz's API before
    ``.render()`` (``d.graph.graph_attr["bgcolor"] = "white"``, ``d.graph.node_attr["fontsize"] = "14"``).
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
    return Diagram(to_graph(panels, max_steps, links), name=name)


def _edge_text(text: str, wrap: bool = False) -> str:
    """An edge label's text: never read as HTML, a backslash shown as one (``graphviz.escape``); with
    ``wrap``, broken before each arrow (DOT's ``\\n``) so it stays narrow.

    >>> print(_edge_text("h_n (bs=2, h=8) → h_0 (bs=6, h=8)", wrap=True))
    h_n (bs=2, h=8)\\n→ h_0 (bs=6, h=8)
    """
    parts = text.split(" → ") if wrap else [text]
    return graphviz.nohtml("\\n→ ".join(graphviz.escape(part) for part in parts))


def _draw_links(g: graphviz.Digraph, panels: Sequence[Panel], links: Sequence[Link], max_steps: int) -> None:
    """Edges between lanes: a state handed on (flat, left to right), an output fed up into an input."""

    def column(n: int, step: int | None) -> int | None:
        """The drawn column of a step of panel n (None: not drawn, inside the ellipsis)."""
        cols = step_columns(panels[n].T, max_steps)
        return next((i for i, col in enumerate(cols) if col.t == str(step)), None)

    def said(text: str, wrap: bool = False) -> dict[str, str]:
        return {"label": _edge_text(text, wrap), "fontsize": "10", "fontcolor": _LINK} if text else {}

    vertical = {(ln.src, ln.dst) for ln in links if stacked(panels, ln)}
    for ln in links:
        a, b = (f"p{ln.src}_" if len(panels) > 1 else ""), (f"p{ln.dst}_" if len(panels) > 1 else "")
        if stacked(panels, ln):  # step t of the output goes up into step t of the next layer's input
            for i, col in enumerate(step_columns(panels[ln.src].T, max_steps)):
                if col.t:  # the change of shape is said once, beside the first step
                    add_edge(g, f"{b}x_{i}", f"{a}y_{i}", dir="back", color=_LINK, penwidth="1.2",
                             **said(ln.change if i == 0 else "", wrap=True))
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
        label = said(ln.label if ln.dst_step in (None, 0) else "")
        if src.endswith("_r") and dst.endswith("_l"):  # a state handed on: same rank, left to right
            same_rank(g, [src, dst])
            add_edge(g, f"{src}:h:e", f"{dst}:h:w", color=_LINK, penwidth="1.6", minlen="3" if ln.change else "2",
                     **said(ln.change, wrap=True))
        elif not src_state and not ln.dst_state and ln.src_step == ln.dst_step:  # up into the lane above
            add_edge(g, dst, src, dir="back", color=_LINK, penwidth="1.2", **label)
        else:
            add_edge(g, src, dst, color=_LINK, penwidth="1.2", constraint="false", **label)


CAPTION_WIDTH = 28
"""Characters a line of a middle panel's caption holds: it stays left of the first step's column, which the
links from the panel below and to the panel above cross."""
_SHAPE = re.compile(r"(?:\w+ )?\([^()]*\)")  # a shape, with the word before it: kept on one caption line


def _caption(lines: Sequence[str]) -> str:
    """A caption as an HTML-like label: one left-aligned line each, escaped."""
    return "<" + "<BR ALIGN=\"LEFT\"/>".join(escape(s, quote=True) for s in lines) + "<BR ALIGN=\"LEFT\"/>>"


def to_graph(panels: Sequence[Panel], max_steps: int = DEFAULT_MAX_STEPS,
             links: Sequence[Link] = ()) -> graphviz.Digraph:
    """The panels as one ``graphviz.Digraph``: one cluster per panel when there are several.

    >>> import torch.nn as nn
    >>> g = to_graph([Panel(conventions(nn.RNN(4, 8)), T=3, bs=2)])
    >>> g.name, g.graph_attr["rankdir"], len(g.body) > 50
    ('unroll', 'TB', True)
    """
    panels, links, hidden = _keep_panels(panels, links)
    check_size(panels, max_steps)
    g = UnrollGraph("unroll")
    # kept in this order (graphviz writes a plain dict sorted): dot 2.43 ends an edge's line about 3 points
    # nearer its arrowhead when arrowsize is declared before fontname; in this order the drawings are as before
    g.graph_attr, g.node_attr, g.edge_attr = OrderedDict(_GRAPH), OrderedDict(_NODE), OrderedDict(_EDGE)
    lower = {ln.src for ln in links if not ln.dst_state and (stacked(panels, ln) or (
        ln.src_step is not None and ln.src_step == ln.dst_step))}
    upper = {ln.dst for ln in links if not ln.dst_state and ln.src in lower}
    for n, panel in enumerate(panels):
        prefix = f"p{n}_" if len(panels) > 1 else ""
        entering = "; ".join(f"{ln.label} of {panels[ln.src].path or 'lane ' + str(ln.src)}" for ln in links
                             if ln.dst == n and ln.dst_state and ln.dst_step in (None, 0))
        c = panel.conv
        lines = caption_lines(panel, c.dim_exprs(batched=panel.batched), c.bindings(panel.T, panel.bs))
        if n in lower and n in upper:  # edges enter its bottom and leave its top: a narrow caption, left of them
            lines = [part for line in lines for part in textwrap.wrap(
                _SHAPE.sub(lambda m: m.group(0).replace(" ", "\u00a0"), line),  # a shape is not broken
                CAPTION_WIDTH, subsequent_indent="  ", break_on_hyphens=False)]
        caption = _caption(lines)
        if len(panels) > 1:
            cluster = UnrollGraph(f"cluster_{n}")
            cluster.attr(label=caption)
            below = [("labelloc", "b")] if n in lower else []  # edges leave its top: the caption goes below
            cluster.attr(_attributes=[*below, ("color", "#999999")])
            draw_panel(cluster, panel, prefix, max_steps, entering, fed_rows(panels, links, n))
            g.subgraph(cluster)
        else:
            g.attr(label=caption)
            draw_panel(g, panel, prefix, max_steps, entering, fed_rows(panels, links, n))
    if hidden:  # the panels left out, said in one node of their own
        add_node(g, "more", _edge_text(hidden), shape="box", style="dashed")
    _draw_links(g, panels, links, max_steps)
    return g


def to_dot(panels: Sequence[Panel], max_steps: int = DEFAULT_MAX_STEPS, links: Sequence[Link] = ()) -> str:
    """DOT text for the panels: the source of :func:`to_graph`.

    >>> import torch.nn as nn
    >>> to_dot([Panel(conventions(nn.RNN(4, 8)), T=3, bs=2)]).splitlines()[0]
    'digraph unroll {'
    """
    return to_graph(panels, max_steps, links).source


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
