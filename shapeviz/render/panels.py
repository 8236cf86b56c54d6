"""What an unrolled diagram draws, as data: panels (one lane of a recurrent module), their steps, the
links between lanes, and the caption lines read from them.

>>> from shapeviz.core.model import Conventions
>>> p = Panel(Conventions("GRU", cell=True, input_size=4, hidden_size=8), T=5, bs=2)
>>> p.conv.kind, p.T, flow_notes(p)
('GRUCell', 5, [])

:mod:`shapeviz.render.lanes` builds them from a trace, :mod:`shapeviz.render.loops` from a
hand-written loop; :mod:`shapeviz.render.unrolled` draws them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from shapeviz.core.dimensions import format_named
from shapeviz.core.model import Conventions

__all__ = [
    "PHASES",
    "STATES",
    "Feed",
    "Link",
    "Panel",
    "Step",
    "caption_lines",
    "fed_rows",
    "flow_notes",
    "own_batch",
    "stacked",
    "whole_output",
]

PHASES = "ABCDEFGH"
"""The letters of a lane's phases (calls from different lines of your code)."""
STATES = frozenset({"h_0", "c_0", "h_n", "c_n", "h_1", "c_1"})


class Feed(Enum):
    """Where one step's input came from.

    >>> Feed.TOKEN.fed_back, Feed.DATA.fed_back
    (True, False)
    """

    DATA = "data"  # not from this lane's own results: the data, teacher forcing
    BACK = "fed back"  # computed from the previous step's output; whether through a token is not recorded
    TOKEN = "token"  # through an integer tensor computed from the previous output (argmax, topk: decoding)
    STATE = "state"  # from the previous output with no integer tensor between (attention reading h)

    @property
    def fed_back(self) -> bool:
        """Whether the input was computed from the previous step's output (any of the three ways)."""
        return self is not Feed.DATA


@dataclass(frozen=True)
class Step:
    """One step of a lane unrolled over calls: the trace's call and its recorded shapes."""

    call: int
    inp: str = ""  # "(bs=2, T=1, emb=8)"
    out: str = ""
    feed: Feed = Feed.DATA
    phase: int = 0


@dataclass(frozen=True)
class Panel:
    """One recurrent module to draw: its conventions and the sizes of this call.

    >>> import torch.nn as nn
    >>> from shapeviz.core.model import conventions
    >>> Panel(conventions(nn.GRUCell(4, 8)), T=5, bs=2).conv.kind
    'GRUCell'
    """

    conv: Conventions
    T: int | None = None
    bs: int | None = None
    batched: bool = True
    path: str = ""
    steps: tuple[Step, ...] = ()  # a lane unrolled over its calls: one per call
    phases: tuple[str, ...] = ()  # the call site of each phase ("predict.py:9: y, state = net(…)")
    runs: tuple[tuple[int, int], ...] = ()  # packed: batch_sizes as (batch size, steps) runs
    calls: int = 1  # how many times the module was called
    # a hand-written loop: each step's input and output as the trace named them (empty: from the conventions)
    step_in: str = ""
    step_out: str = ""
    # a lane unrolled over its calls: the dim its loop iterates, with evidence (it reads one step of a dim so
    # named: x[t], unbind); "" when the count of calls is just a count (a decoder's steps)
    loop_dim: str = "T"
    notes: tuple[str, ...] = ()  # caption lines about this panel that need the others (its own T, bs)

    def ends(self) -> dict[int, int]:
        """Packed: step -> how many sequences end there (their last step), from the batch_sizes runs.

        >>> Panel(Conventions("LSTM", cell=False, input_size=4, hidden_size=6), runs=((3, 2), (2, 1), (1, 2))).ends()
        {1: 1, 2: 1, 4: 1}
        """
        out: dict[int, int] = {}
        t = -1
        for r, (size, n) in enumerate(self.runs):
            t += n
            after = self.runs[r + 1][0] if r + 1 < len(self.runs) else 0
            if size > after:
                out[t] = size - after
        return out

    def rows(self) -> str:
        """Packed: ``"sum(lengths)=10"``, the rows of the data."""
        return f"sum(lengths)={self.offset(self.T or 0)}"

    def offset(self, t: int) -> int:
        """Packed: the first row of step ``t`` in ``data`` (the batch sizes of the steps before it)."""
        out = 0
        for size, n in self.runs:
            take = min(n, t)
            out += size * take
            t -= take
            if t <= 0:
                break
        return out

    def batch_size(self, t: int) -> int | None:
        """Packed: the batch size of step ``t`` (``batch_sizes[t]``); else None."""
        for size, n in self.runs:
            if t < n:
                return size
            t -= n
        return None


@dataclass(frozen=True)
class Link:
    """Data handed from one lane to another: ``src`` panel's state or output to ``dst``'s state or input.

    A step of None means the whole call (a layer's h_n, its output sequence)."""

    src: int
    src_step: int | None
    src_state: bool  # from h_n / h_1 (else from the output)
    dst: int
    dst_step: int | None
    dst_state: bool  # into h_0 / hx (else into the input)
    label: str
    # how the data changed on the way, when it did: "h_n (layers*D=4, bs=3, h=5) → getitem, cat → h_0 (…)"
    change: str = ""


def flow_notes(panel: Panel) -> list[str]:
    """Caption lines: where each step's input came from, the phases, a packed batch's lengths."""
    out = []
    if panel.steps:
        n = len(panel.steps)
        counts = {f: sum(st.feed is f for st in panel.steps) for f in (Feed.TOKEN, Feed.STATE, Feed.BACK)}
        if counts[Feed.TOKEN]:
            out.append(f"red dashed 'token': {counts[Feed.TOKEN]} of {n} steps take a token chosen from the previous "
                       "step's output (an integer tensor computed from it: argmax, topk, sampling)")
        if counts[Feed.STATE]:
            out.append(f"red dashed 'h': {counts[Feed.STATE]} of {n} steps take an input computed from the previous "
                       "step's h with no integer tensor between (no token fed back: the state read again, e.g. by "
                       "attention)")
        if counts[Feed.BACK]:
            out.append(f"red dashed: {counts[Feed.BACK]} of {n} steps take an input computed from the previous "
                       "step's output (the trace does not say whether through a token: retrace it with this version)")
        if not any(counts.values()) and not panel.conv.cell:
            out.append("no step's input was computed, as a tensor, from an earlier step's output: inputs from "
                       "the data (teacher forcing), or through int() / .item(), which a trace does not follow")
    for n, site in enumerate(panel.phases[:len(PHASES)]):
        calls = [k for k, st in enumerate(panel.steps) if st.phase == n]
        span = (f"call {calls[0]}" if len(calls) == 1 else f"calls {calls[0]}-{calls[-1]}"
                if calls[-1] - calls[0] == len(calls) - 1 else f"{len(calls)} calls from {calls[0]} to {calls[-1]}")
        out.append(f"phase {PHASES[n]}: {span}, called from {site}")
    if panel.runs:
        ends = panel.ends()
        # the first 9 lengths only: a batch of 10**6 sequences lists no more than a batch of 9
        lengths = list(itertools.islice((t + 1 for t in sorted(ends, reverse=True) for _ in range(ends[t])), 9))
        shown = ", ".join(map(str, lengths[:8])) + (", ..." if len(lengths) > 8 else "")
        sizes = ", ".join(f"{s}" if n == 1 else f"{s} x{n}" for s, n in panel.runs[:8])
        if panel.conv.cell:
            out.append(f"the batch shrinks over the calls: bs {sizes} (as in a loop over packed data; "
                       "each call's state rows are drawn with its own bs)")
        else:
            out.append(f"packed: lengths {shown} (batch_sizes {sizes}); step t runs only the first "
                       "batch_sizes[t] sequences, and each sequence's h_n leaves at its own last step")
    return out


def whole_output(ln: Link) -> bool:
    """A link from a layer's whole call (its output sequence, h_n) into another lane's input."""
    return ln.src_step is None and not ln.dst_state


def stacked(panels: Sequence[Panel], ln: Link) -> bool:
    """One layer's output sequence is the next layer's input (a hand-written stack): same steps."""
    src, dst = panels[ln.src], panels[ln.dst]
    return (whole_output(ln) and not ln.src_state and ln.dst_step is None and not src.steps and not dst.steps
            and src.T is not None and src.T == dst.T)


def fed_rows(panels: Sequence[Panel], links: Sequence[Link], n: int) -> list[str]:
    """Rows for panel n's input header: ``"input computed from output of encoder (calls 1-4)"``."""
    steps: dict[str, list[int]] = {}
    for ln in links:
        if ln.dst == n and whole_output(ln) and not stacked(panels, ln):
            text = f"{ln.label} of {panels[ln.src].path or 'lane ' + str(ln.src)}"
            steps.setdefault(text, []).append(-1 if ln.dst_step is None else ln.dst_step)
    out = []
    for text, ks in steps.items():
        if ks != [-1]:
            text += f" (call {ks[0]})" if len(ks) == 1 else f" ({len(ks)} calls, {ks[0]}-{ks[-1]})"
        out.append(text)
    return out


def own_batch(panel: Panel, dims: dict[str, tuple[str, ...]], b: dict[str, int | None]
              ) -> tuple[dict[str, tuple[str, ...]], dict[str, int | None]]:
    """A panel's dims and bindings, its batch named ``batch`` where a loop runs over the batch's items (each
    call's batch is then no bs of the model's: ``bs`` is the loop's count).

    >>> p = Panel(Conventions("GRU", cell=True, input_size=4, hidden_size=8), T=3, bs=5, loop_dim="bs")
    >>> own_batch(p, {"input": ("bs", "emb")}, {"bs": 5, "emb": 4})
    ({'input': ('batch', 'emb')}, {'bs': 5, 'emb': 4, 'batch': 5})
    """
    if panel.loop_dim != "bs":
        return dims, b
    return {k: tuple("batch" if e == "bs" else e for e in v) for k, v in dims.items()}, {**b, "batch": b.get("bs")}


def caption_lines(panel: Panel, dims: dict[str, tuple[str, ...]], b: dict[str, int | None]) -> list[str]:
    """The caption of a panel: what it is, its sizes (``T=`` only with evidence), where its inputs came
    from, and its shapes in named dims (``dims``: the conventions' names, ``b``: their sizes).

    >>> p = Panel(Conventions("GRU", cell=True, input_size=4, hidden_size=8), T=5, bs=2)
    >>> caption_lines(p, p.conv.dim_exprs(), p.conv.bindings(5, 2))[0]
    'GRUCell(4, 8)   unrolled over time: T=5, bs=2'
    """
    c = panel.conv
    title = (f"{panel.path}: " if panel.path else "") + c.label
    sizes = []
    count = f"{panel.loop_dim}={panel.T}" if panel.loop_dim else f"{panel.T}"  # T only with evidence
    if panel.steps and not c.cell:
        sizes.append(f"{count} calls of one step each")
    elif not panel.loop_dim:
        sizes.append(f"{count} steps" + (" (its longest sequence)" if panel.runs and not c.cell else "")
                     if panel.step_in or (panel.runs and not c.cell) else f"{count} calls")
    else:
        sizes.append(f"{count}" if panel.T is not None else "T unknown")
    over_bs = panel.loop_dim == "bs"  # a loop over the batch's items: each call's batch is not the model's bs
    dims, b = own_batch(panel, dims, b)
    if panel.batched:
        sizes.append(("each call's batch " if over_bs else "bs=") + f"{panel.bs}" if panel.bs is not None
                     else "bs unknown")
    else:
        sizes.append("unbatched (no bs dim)")
    lines = [f"{title}   unrolled over {'its calls, one per item of bs' if over_bs else 'time'}: {', '.join(sizes)}"]
    if panel.calls > 1 and not panel.steps:
        lines.append(f"called {panel.calls} times: the first call is drawn")
    lines += list(panel.notes) + flow_notes(panel)
    if panel.step_in:  # a hand-written loop: the step's tensors as the trace named them
        lines.append(f"each step: input {panel.step_in}, state h {format_named(dims['h_0'], b)}"
                     + (f", output {panel.step_out}" if panel.step_out else ""))
        return lines
    if c.cell:
        lines.append(f"one {c.kind} called once per step: input {format_named(dims['input'], b)}, "
                     f"h {format_named(dims['h_0'], b)}" + (f", c {format_named(dims['c_0'], b)}"
                                                             if c.is_lstm else ""))
        return lines
    if panel.steps:
        lines.append(f"each call: input {panel.steps[0].inp}  ->  output {panel.steps[0].out}")
    else:
        pad = "padded to the longest sequence (as pad_packed_sequence gives): " if panel.runs else ""
        out = format_named(dims["output"], b) if "output" in dims else "(not declared)"
        line = f"{pad}input {format_named(dims['input'], b)}  ->  output {out}"
        lines.append(line if panel.loop_dim or not panel.runs else line.replace("T=", ""))  # steps, not the T
    state = f"h_0, h_n {format_named(dims['h_0'], b)}"
    if c.is_lstm:
        state += f";  c_0, c_n {format_named(dims['c_0'], b)}"
    stacked = "layers*D" in dims["h_0"]
    lines.append(state + (";  stacked index = layer*D + direction" if stacked else ""))
    if c.declaration is not None:
        lines.append(f"declared: sv.recurrent({c.kind}, {c.declaration.spec})")
    if c.layout.flag_note:
        lines.append(f"{c.layout.flag_note} applies to input and output only: "
                     "h_0, h_n" + (", c_0, c_n" if c.is_lstm else "") + " are never batch-first")
    return lines
