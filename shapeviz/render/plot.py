"""A matplotlib figure of a :class:`~shapeviz.tracing.records.Trace`: the shape flow, one row per call.

>>> import torch, torch.nn as nn
>>> from shapeviz.tracing.session import trace
>>> fig = plot_trace(trace(nn.LSTMCell(4, 8), torch.zeros(3, 4)))
>>> [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("(")][:2]
['(bs=3, emb=4)', '(bs=3, h=8)']

Each tensor is a block: width from its last dim, height from the one before (log-scaled, so 2
and 4096 both stay readable), a stack of shadows for leading dims; under it its name and its
shape in named dims. Calls run top to bottom in order; repeated steps are drawn once with a
``× T`` bracket. Recurrent state (``h``, ``c``) has its own lane on the right, with a loop arrow
when the state of one step feeds the next. matplotlib is imported here only, inside the function; the figure
has its own Agg canvas (pyplot and the global backend are left alone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from shapeviz.render.table import group_repeats, repeat_label
from shapeviz.render.textsafe import visible

__all__ = ["plot_trace"]

# inches; the figure is laid out in inches (1 data unit = 1 inch)
_CHAR = 0.066  # width of one character of the 7.5 pt monospace labels
_FONT = 7.5
_PAD = 0.18
_ROW_GAP = 0.16
_STATE_ROLES = ("h_0", "c_0", "h_n", "c_n", "h_1", "c_1")
_COLORS = {"in": "#9ecae1", "out": "#a1d99b", "int": "#d9d9d9", "h": "#fdae6b", "c": "#bcbddc",
           "op": "#f7f7f7"}
_MAX_BLOCKS = 6
"""Most tensor blocks drawn in one lane of a row; the rest are one ``+N more`` block (a trace file may give a
call 10,000 tensors: drawing each would take minutes)."""
_MAX_TEXT = 100
"""Longest text drawn for a name or a shape (a longer one ends with ``…``)."""
_EDGES = {"in": "#3182bd", "out": "#31a354", "int": "#737373", "h": "#e6550d", "c": "#756bb1"}


def _side(n: int) -> float:
    """Block side (inches) for a dim of size n: log-scaled."""
    return 0.10 + 0.075 * math.log2(max(n, 1) + 1)


@dataclass
class _Block:
    info: Any
    kind: str  # "in", "out", "int", "h", "c"
    w: float
    h: float
    depth: int  # shadows drawn behind for leading dims
    lines: tuple[str, str]
    x: float = 0.0
    cx: float = 0.0  # block centre and vertical extent, set when drawn
    top: float = 0.0
    bottom: float = 0.0

    @property
    def width(self) -> float:
        return max(self.w + 0.05 * self.depth, max(len(s) for s in self.lines) * _CHAR) + _PAD

    @property
    def height(self) -> float:
        return self.h + 0.05 * self.depth


def _clip(text: str) -> str:
    """Text as drawn: visible characters only, at most ``_MAX_TEXT`` of them.

    >>> print(_clip("enc\\x1b[0m")), len(_clip("x" * 500))
    enc\\x1b[0m
    (None, 100)
    """
    text = visible(text, escape=True)  # (the figure's fonts have no control pictures)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT - 1] + "…"


def _more(n: int, kind: str) -> _Block:
    """The block that stands for ``n`` tensors not drawn."""
    info = SimpleNamespace(device="cpu", produced_by=None, shape=())
    return _Block(info, kind, 0.12, 0.12, 0, (f"+{n:,} more", "not drawn"))


def _capped(blocks: list[_Block], kind: str) -> list[_Block]:
    if len(blocks) <= _MAX_BLOCKS:
        return blocks
    return blocks[:_MAX_BLOCKS - 1] + [_more(len(blocks) - _MAX_BLOCKS + 1, kind)]


def _block(info: Any, kind: str) -> _Block:
    shape = tuple(info.shape) or (1,)
    if info.dtype.startswith(("int", "uint", "bool")) and kind in ("in", "out"):
        kind = "int"
    w = min(_side(shape[-1]), 1.0)
    h = min(_side(shape[-2]), 0.8) if len(shape) >= 2 else 0.12
    depth = min(len(shape) - 2, 2) if len(shape) > 2 else 0
    name = info.label or info.role
    if info.packed:
        name = f"{name}.{info.packed}" if name else info.packed
    if info.repeat > 1:
        name = f"{info.repeat} × {name}" if name else f"list of {info.repeat}"
    extra = []
    if info.dtype != "float32":
        extra.append(info.dtype)
    if info.device != "cpu":
        extra.append(info.device)
    if extra:
        name = f"{name} [{', '.join(extra)}]" if name else f"[{', '.join(extra)}]"
    return _Block(info, kind, w, h, depth, (_clip(name), _clip(info.format())))


@dataclass
class _Row:
    call: Any
    repeats: int
    span: int
    ins: list[_Block]
    outs: list[_Block]
    s_in: list[_Block]
    s_out: list[_Block]
    label: str
    sub: str
    loops: bool = False  # the next repeat's state is this step's result
    y: float = 0.0
    height: float = 0.0


def _row(call: Any, repeats: int, span: int) -> _Row:
    ins, s_in, outs, s_out = [], [], [], []
    for i in call.inputs:  # (the first blocks of each lane are enough: the rest are counted, not made)
        if i.role in _STATE_ROLES:
            s_in.append(_block(i, i.role[0]) if len(s_in) <= _MAX_BLOCKS else s_in[-1])
        else:
            ins.append(_block(i, "in") if len(ins) <= _MAX_BLOCKS else ins[-1])
    for o in call.outputs:
        if o.role in _STATE_ROLES:
            s_out.append(_block(o, o.role[0]) if len(s_out) <= _MAX_BLOCKS else s_out[-1])
        else:
            outs.append(_block(o, "out") if len(outs) <= _MAX_BLOCKS else outs[-1])
    ins, outs = _capped(ins, "in"), _capped(outs, "out")
    s_in, s_out = _capped(s_in, "h"), _capped(s_out, "h")
    if call.kind == "op":
        label, sub = call.type, call.source
    else:
        label = call.path or call.type
        sub = call.type if call.path else "model"
    if call.error:
        sub = (sub + "  ✗ raised").strip()
    return _Row(call, repeats, span, ins, outs, s_in, s_out, "  " * min(call.depth, 20) + _clip(label), _clip(sub))


def _lane_width(rows: list[_Row], attr: str) -> float:
    return max([sum(b.width for b in getattr(r, attr)) for r in rows] + [0.0])


def plot_trace(trace: Any, *, max_rows: int = 40, title: str | None = None) -> Any:
    """A matplotlib ``Figure`` of the trace's shape flow (rows of tensor blocks, state lane).

    >>> import torch, torch.nn as nn
    >>> from shapeviz.tracing.session import trace
    >>> fig = plot_trace(trace(nn.GRU(3, 5), torch.zeros(4, 2, 3)))
    >>> bool(fig.get_figwidth() > 4), len(fig.axes)
    (True, 1)
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, Rectangle

    calls = list(trace.calls)
    spans = group_repeats(calls)
    rows: list[_Row] = []
    for start, k, r in spans:
        for j in range(k):
            row = _row(calls[start + j], r if j == 0 else 0, k if j == 0 else 0)
            if r > 1:
                nxt = calls[start + j + k]
                row.loops = any(i.role in _STATE_ROLES and i.produced_by == start + j for i in nxt.inputs)
            rows.append(row)
    cut = max(0, len(rows) - max_rows)
    rows = rows[:max_rows]

    # ---- layout (inches)
    bracket_w = 0.75 if any(r.repeats > 1 for r in rows) else 0.1
    label_w = max([max(len(r.label), len(r.sub)) * _CHAR * 1.1 for r in rows] + [1.0]) + _PAD
    in_w = max(_lane_width(rows, "ins"), 1.0)
    out_w = max(_lane_width(rows, "outs"), 1.0)
    arrow_w = 0.55
    has_state = any(r.s_in or r.s_out for r in rows)
    s_in_w = _lane_width(rows, "s_in")
    s_out_w = _lane_width(rows, "s_out")
    state_w = (s_in_w + s_out_w + 0.9) if has_state else 0.0
    x_label = bracket_w
    x_in = x_label + label_w
    x_out = x_in + in_w + arrow_w
    x_state = x_out + out_w + 0.35
    width = x_state + state_w + 0.2
    head = 0.95
    y = head
    for r in rows:
        blocks = r.ins + r.outs + r.s_in + r.s_out
        tallest = max([b.height for b in blocks] + [0.2])
        r.height = tallest + 0.36
        r.y = y
        y += r.height + _ROW_GAP
    height = y + (0.3 if cut else 0.1)

    fig = Figure(figsize=(width, height), dpi=110)  # no pyplot: no global figure, no backend switch
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    mono = {"family": "DejaVu Sans Mono", "size": _FONT}

    def text(x: float, y: float, s: str, **kw: Any) -> Any:
        """``ax.text`` of text from user code or a file: no mathtext (``$…$`` is drawn as typed), visible."""
        s = visible(s, escape=True)
        return ax.text(x, y, s if len(s) <= 4 * _MAX_TEXT else s[:4 * _MAX_TEXT - 1] + "…", parse_math=False, **kw)

    n_mod = sum(c.kind == "module" for c in calls)
    head_text = title or (f"trace of {trace.model}: {n_mod} module call{'s' if n_mod != 1 else ''}"
                          + (f", {len(calls) - n_mod} ops" if trace.ops else ""))
    text(0.15, 0.28, head_text, fontsize=11, fontweight="bold", va="center")
    if trace.sizes:
        sizes = ", ".join(f"{n}={'/'.join(str(s) for s in ss)}" for n, ss in trace.sizes.items())
        text(0.15, 0.55, f"sizes: {sizes}", fontsize=8, color="#444444", va="center", fontfamily="monospace")
    # column headers
    for x, header in ((x_in, "inputs"), (x_out, "outputs")):
        text(x + 0.05, head - 0.12, header, fontsize=8, color="#666666", style="italic")
    if has_state:
        text(x_state + 0.05, head - 0.12, "recurrent state: in → out", fontsize=8, color="#666666",
                style="italic")
        ax.add_patch(Rectangle((x_state - 0.12, head - 0.05), state_w + 0.1, height - head - 0.05,
                               facecolor="#fff7ec", edgecolor="none", zorder=0))

    def draw(b: _Block, x: float, base: float) -> tuple[float, float]:
        """Draw block b with its left edge at x and its bottom on the row's baseline."""
        b.x = x
        face, edge = _COLORS[b.kind], _EDGES[b.kind]
        bx = x + (b.width - _PAD - b.w - 0.05 * b.depth) / 2
        top = base - b.height
        for d in range(b.depth, 0, -1):  # shadows: leading dims
            ax.add_patch(Rectangle((bx + 0.05 * d, top + 0.05 * (b.depth - d)), b.w, b.h, facecolor=face,
                                   edgecolor=edge, linewidth=0.6, alpha=0.55, zorder=2))
        hatch = "////" if b.info.device == "meta" else None
        ax.add_patch(Rectangle((bx, top + 0.05 * b.depth), b.w, b.h, facecolor=face, edgecolor=edge,
                               linewidth=1.0, hatch=hatch, zorder=3))
        cx = x + (b.width - _PAD) / 2
        b.cx, b.top, b.bottom = bx + b.w / 2, top, base
        ty = base + 0.03
        text(cx, ty, b.lines[0], ha="center", va="top", fontdict=mono, color="#333333")
        text(cx, ty + 0.14, b.lines[1], ha="center", va="top", fontdict=mono, color="#000000")
        return bx + b.w / 2, top + 0.05 * b.depth + b.h / 2

    for idx, r in enumerate(rows):
        c = r.call
        top = r.y
        if idx % 2 == 0:
            ax.add_patch(Rectangle((x_label - 0.05, top - _ROW_GAP / 2), x_state - x_label - 0.1,
                                   r.height + _ROW_GAP, facecolor="#f6f6f6", edgecolor="none", zorder=0))
        weight = "bold" if c.kind == "module" else "normal"
        text(x_label, top + 0.12, r.label, fontsize=8.5, fontweight=weight, va="center",
                fontfamily="monospace", color="#b30000" if c.error else "#000000")
        text(x_label, top + 0.30, "  " * min(c.depth, 20) + r.sub, fontsize=7, va="center", color="#777777",
                fontfamily="monospace")
        base = top + max([b.height for b in r.ins + r.outs + r.s_in + r.s_out] + [0.2])
        mid = base - 0.1
        x = x_in
        for b in r.ins:
            draw(b, x, base)
            x += b.width
        # the arrow between inputs and outputs, with an op's symbol
        ax.add_patch(FancyArrowPatch((x_in + in_w + 0.05, mid), (x_out - 0.08, mid), arrowstyle="-|>",
                                     mutation_scale=10, color="#555555", linewidth=1.0, zorder=1))
        sym = {"matmul": "@", "add": "+", "mul": "×", "sub": "−"}.get(c.type, "")
        if sym:
            text(x_in + in_w + arrow_w / 2 - 0.02, mid - 0.1, sym, ha="center", fontsize=9, color="#333333")
        x = x_out
        for b in r.outs:
            draw(b, x, base)
            x += b.width
        if has_state and (r.s_in or r.s_out):
            x = x_state
            centres_in = []
            for b in r.s_in:
                centres_in.append(draw(b, x, base))
                x += b.width
            if not r.s_in:
                text(x_state + 0.05, top + 0.15, "zeros", fontsize=7, color="#999999", style="italic")
            x = x_state + s_in_w + 0.6
            ax.add_patch(FancyArrowPatch((x - 0.55, mid), (x - 0.1, mid), arrowstyle="-|>", mutation_scale=9,
                                         color="#e6550d", linewidth=1.0, zorder=1))
            centres_out = []
            for b in r.s_out:
                centres_out.append(draw(b, x, base))
                x += b.width
            if r.loops and centres_in and centres_out:  # the state feeds the next step: loop back
                (x0, y0), (x1, y1) = centres_out[0], centres_in[0]
                ax.add_patch(FancyArrowPatch((x0, y0 - 0.12), (x1, y1 - 0.12), connectionstyle="arc3,rad=0.45",
                                             arrowstyle="-|>", mutation_scale=9, color="#e6550d", linewidth=1.1,
                                             zorder=4))
        if r.repeats > 1:
            span_rows = rows[idx:idx + r.span]
            y0 = top - 0.02
            y1 = span_rows[-1].y + span_rows[-1].height
            xb = bracket_w - 0.12
            ax.plot([xb + 0.08, xb, xb, xb + 0.08], [y0, y0, y1, y1], color="#8c2d04", linewidth=1.4)
            text(xb - 0.05, (y0 + y1) / 2, repeat_label(r.repeats, [x.call for x in span_rows]), rotation=90,
                    ha="right", va="center", fontsize=8.5, color="#8c2d04", fontweight="bold")
    # state handed from one call to a later one (an encoder's (h_n, c_n) starting a decoder)
    shown = {r.call.index: r for r in rows}
    for r in rows:
        for b in r.s_in:
            src = shown.get(b.info.produced_by) if b.info.produced_by is not None else None
            if src is None or src is r:
                continue
            match = [o for o in src.s_out if o.kind == b.kind and o.info.shape == b.info.shape]
            if match:
                o = match[0]
                ax.add_patch(FancyArrowPatch((o.cx, o.bottom + 0.33), (b.cx, b.top - 0.02),
                                             connectionstyle="arc3,rad=0.0", arrowstyle="-|>", mutation_scale=10,
                                             color=_EDGES[b.kind], linewidth=1.2, linestyle="--", zorder=4))
    if cut:
        text(x_label, height - 0.18, f"… {cut} more row{'s' if cut != 1 else ''}", fontsize=8, color="#666666")
    # legend
    lx = width - 3.3
    for i, (kind, what) in enumerate((("in", "input"), ("out", "output"), ("int", "integer"),
                                      ("h", "h state"), ("c", "c state"))):
        ax.add_patch(Rectangle((lx + i * 0.66, 0.2), 0.14, 0.12, facecolor=_COLORS[kind], edgecolor=_EDGES[kind]))
        text(lx + i * 0.66 + 0.18, 0.26, what, fontsize=6.5, va="center")
    return fig
