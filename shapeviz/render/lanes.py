"""From a trace to the lanes of an unrolled diagram, following the data flow the trace recorded.

>>> import torch, torch.nn as nn
>>> from shapeviz.tracing.session import trace
>>> cell = nn.GRUCell(4, 8)
>>> def loop(x, h):
...     for x_t in x:
...         h = cell(x_t, h)
...     return h
>>> panels, links = lanes(trace(loop, torch.zeros(5, 2, 4), torch.zeros(2, 8)))
>>> panels[0].T, [s.feed.value for s in panels[0].steps][:2]
(5, ['data', 'data'])

Repeated calls of one recurrent module become one lane unrolled over the calls (a cell always; a
layer when every call is one step). A state or output that one lane hands another becomes a
:class:`Link` (encoder → decoder, ``lstm1`` → ``lstm2`` per step); a step whose input was computed
from the previous step's output is marked :attr:`Feed.BACK` (greedy decoding), one whose input
comes from elsewhere :attr:`Feed.DATA` (teacher forcing, a data loop). Works on anything shaped
like :class:`shapeviz.tracing.records.Trace` (duck-typed: ``flow``, ``site`` and ``batch_sizes``
are optional).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from shapeviz._errors import SpecError
from shapeviz.core.model import Conventions
from shapeviz.render.loops import find_loop, loop_panel
from shapeviz.render.panels import (
    PHASES,
    STATES,
    Feed,
    Link,
    Panel,
    Step,
    fed_rows,
    flow_notes,
    stacked,
    whole_output,
)
from shapeviz.render.table import loop_dim

__all__ = ["PHASES", "Feed", "Link", "Panel", "Step", "fed_rows", "flow_notes", "lanes", "loop_panel",
           "panels_from_trace", "stacked", "whole_output"]

def _sizes_from_input(conv: Conventions, info: Any) -> tuple[int | None, int | None, bool]:
    """T, bs and batched-ness of one recorded input, read through the Conventions' dims."""
    shape = tuple(info.shape)
    names = tuple(getattr(info, "names", None) or ())
    if any(n.startswith("sum(") for n in names):  # a PackedSequence's data: T is not in the shape
        return None, None, True
    for batched in (True, False):
        dims = conv.dim_exprs(batched=batched)["input"]
        if len(dims) == len(shape):
            T = shape[dims.index("T")] if "T" in dims else None
            bs = shape[dims.index("bs")] if "bs" in dims else None
            return T, bs, batched
    return None, None, True


def _bs_from_state(conv: Conventions, calls: Sequence[Any]) -> int | None:
    """bs from a recorded h_0 or h_n (their dims never depend on batch_first or packing)."""
    infos = list(getattr(calls[0], "inputs", ())) + list(getattr(calls[0], "outputs", ()))
    for info in infos:
        if info.role in ("h_0", "h_n"):
            dims = conv.dim_exprs()[info.role]
            if len(dims) == len(info.shape):
                return int(info.shape[dims.index("bs")])
    return None


def _fmt(info: Any) -> str:
    return info.format() if info is not None and hasattr(info, "format") else ""


def _role(call: Any, role: str) -> Any:
    return next((i for i in getattr(call, "inputs", ()) if i.role == role
                 and getattr(i, "packed", "") != "batch_sizes"), None)


class _Chains:
    """The chains of call sites of calls and their enclosing calls (outermost first, ``"file.py:9: code"``),
    each interned as an int made of its parent's chain and its own site, so that a lane of many calls nested
    deep costs one step per call, not one per call and level.

    >>> from types import SimpleNamespace as NS
    >>> outer = NS(index=0, parent=None, site="run.py:3", code="model(x)")
    >>> inner = NS(index=1, parent=0, site="model.py:9", code="")
    >>> chains = _Chains({0: outer, 1: inner})
    >>> chains.sites(chains.chain(inner))
    ('run.py:3: model(x)', 'model.py:9')
    """

    def __init__(self, by_index: dict[int, Any]) -> None:
        self.by_index = by_index
        self.of: dict[int, int] = {}  # id(call) -> its chain
        self.ids: dict[tuple[int, str], int] = {}  # (parent's chain, site) -> chain; 0 is the empty chain
        self.links: list[tuple[int, str]] = [(0, "")]  # chain -> (parent's chain, site)

    def chain(self, call: Any) -> int:
        path, seen = [], set()
        c: Any = call
        while c is not None and id(c) not in self.of and id(c) not in seen:  # (calls that are each other's
            seen.add(id(c))                                                   # parent, in a hand-made trace)
            path.append(c)
            c = self.by_index.get(c.parent) if getattr(c, "parent", None) is not None else None
        base = self.of.get(id(c), 0) if c is not None else 0
        for x in reversed(path):
            site = getattr(x, "site", "")
            if site:
                code = getattr(x, "code", "")
                key = (base, f"{site}: {code}" if code else site)
                found = self.ids.get(key)
                if found is None:
                    found = self.ids[key] = len(self.links)
                    self.links.append(key)
                base = found
            self.of[id(x)] = base
        return base

    def sites(self, chain: int) -> tuple[str, ...]:
        out = []
        while chain:
            chain, site = self.links[chain]
            out.append(site)
        return tuple(reversed(out))


def _phases(calls: Sequence[Any], by_index: dict[int, Any]) -> tuple[list[int], tuple[str, ...]]:
    """The phase of each call (one per distinct chain of call sites, in order of first use) and the
    site that tells the phases apart; no phases for one site or more than ``len(PHASES)``."""
    interned = _Chains(by_index)
    keys = [interned.chain(c) for c in calls]
    distinct: dict[int, int] = {}
    order = [distinct.setdefault(k, len(distinct)) for k in keys]
    if not 2 <= len(distinct) <= len(PHASES):
        return [0] * len(calls), ()
    chains = [interned.sites(k) for k in distinct]
    depth = next((i for i in range(min(map(len, chains)))
                  if len({d[i] for d in chains}) > 1), min(map(len, chains)) - 1)
    return order, tuple(d[depth] if d else "" for d in chains)


def lanes(trace: Any) -> tuple[list[Panel], list[Link]]:
    """The panels (one lane per recurrent module) and the links between them."""
    groups: dict[str, list[Any]] = {}
    for call in trace.calls:
        if getattr(call, "kind", "module") != "module" or getattr(call, "conventions", None) is None:
            continue
        groups.setdefault(call.path, []).append(call)
    if not groups:
        loop = find_loop(trace)
        if isinstance(loop, Panel):
            return [loop], []
        kinds = sorted({f"{c.kind}:{c.type}" for c in trace.calls})[:8]
        raise SpecError("the trace holds no call of a recurrent module (nn.RNN/LSTM/GRU or a *Cell) to unroll "
                        f"and no hand-written loop to draw: {loop}; it recorded: {', '.join(kinds) or 'nothing'}. "
                        "Trace a model that uses one, or draw a module directly: sv.unroll(module, T=..., bs=...)")
    by_index = {c.index: c for c in trace.calls if hasattr(c, "index")}
    where: dict[int, tuple[int, int]] = {}  # call index -> (panel, step)
    panels: list[Panel] = []
    for n, calls in enumerate(groups.values()):
        panels.append(_panel(calls, by_index, tuple(getattr(trace, "sizes", {}).get("T") or ())))
        over = bool(panels[-1].steps)
        for k, c in enumerate(calls):
            where[getattr(c, "index", -1 - k)] = (n, k if over else -1)
    links: dict[tuple, Link] = {}
    for n, calls in enumerate(groups.values()):
        for k, c in enumerate(calls if panels[n].steps else calls[:1]):
            for info in getattr(c, "inputs", ()):
                for ci, pos in getattr(info, "flow", ()):
                    hit = where.get(ci)
                    if hit is None or hit[0] == n:
                        continue
                    src = by_index[ci]
                    out = src.outputs[pos] if pos < len(src.outputs) else None
                    out_role = getattr(out, "role", "")
                    dst_state = info.role in STATES
                    verb = "=" if getattr(info, "produced_by", None) == ci else "computed from"
                    label = f"{info.role} {verb} {out_role}" if out_role else info.role
                    m, s = hit
                    key = (m, s, n, k if panels[n].steps else -1, dst_state)
                    if key not in links:
                        links[key] = Link(m, None if s < 0 else s, out_role in STATES, n,
                                          k if panels[n].steps else None, dst_state, label,
                                          _change(out, info, ci, by_index))
    return _own_sizes(panels), list(links.values())


def _own_sizes(panels: list[Panel]) -> list[Panel]:
    """A layer whose T or bs is not the others' (a skip RNN's (T/skip, bs*skip), a beam search's bs*k)
    says that the names are its own input's: T and bs name each module's dims, not one size each.

    >>> from shapeviz.core.model import Conventions
    >>> gru = Conventions("GRU", cell=False, input_size=4, hidden_size=6)
    >>> ps = _own_sizes([Panel(gru, 12, 2, path="gru"), Panel(gru, 4, 6, path="gru_skip")])
    >>> print(ps[1].notes[0])
    T=4, bs=6 are the sizes of this layer's own input (another layer here has T=12, bs=2)
    """
    seen = {name: {v for p in panels for v in [_shown(p, name)] if v is not None} for name in ("T", "bs")}
    out = []
    for p in panels:
        mine = {name: _shown(p, name) for name in ("T", "bs")}
        other = {name: sorted(seen[name] - {v}) for name, v in mine.items() if v is not None and seen[name] - {v}}
        if other:
            here = ", ".join(f"{n}={mine[n]}" for n in other)
            also = ", ".join(f"{n}={'/'.join(map(str, vs))}" for n, vs in other.items())
            verb = "is the size" if len(other) == 1 else "are the sizes"
            p = replace(p, notes=p.notes + (f"{here} {verb} of this layer's own input (another layer here "
                                            f"has {also})",))
        out.append(p)
    return out


def _shown(p: Panel, name: str) -> int | None:
    """The size a panel's caption names T or bs (T only where its caption calls it T: a layer over a
    whole sequence, or a loop over a dim's steps; never a count of decoding calls)."""
    if name == "bs":
        return p.bs if not p.runs else None  # a shrinking (packed) batch has no one bs
    return p.T if not p.steps or (p.conv.cell and p.loop_dim == "T") else None


_MAX_OPS = 8


def _change(out: Any, info: Any, src: int, by_index: dict[int, Any]) -> str:
    """How ``out`` (a result of call ``src``) became ``info`` (another lane's argument), when its shape
    changed: both shapes, each in its own module's names, and the recorded ops between (``ops=True``).

    The ops are read back from ``info`` through the records that produced it and were computed from
    ``src``; none are shown when the trace did not record them."""
    if out is None or tuple(out.shape) == tuple(info.shape) or not hasattr(out, "format"):
        return ""
    ops: list[str] = []
    cur = info
    while len(ops) < _MAX_OPS:
        p = getattr(cur, "produced_by", None)
        call = by_index.get(p) if p is not None and p != src else None
        if call is None or getattr(call, "kind", "") != "op":
            break
        name = str(call.type).strip("_").lstrip(".")
        if not ops or ops[-1] != name:
            ops.append(name)
        nxt = [i for i in call.inputs if any(ci == src for ci, _ in getattr(i, "flow", ()))]
        if not nxt:
            break
        cur = nxt[0]
    via = f" → {', '.join(reversed(ops))}" if ops else ""
    return f"{out.role or 'result'} {out.format()}{via} → {info.role or 'input'} {info.format()}"


def _panel(calls: Sequence[Any], by_index: dict[int, Any], t_sizes: Sequence[int] = ()) -> Panel:
    conv: Conventions = calls[0].conventions
    first = _role(calls[0], "input")
    T, bs, batched = _sizes_from_input(conv, first) if first is not None else (None, None, True)
    sizes = next((i for i in calls[0].inputs if getattr(i, "packed", "") == "batch_sizes"
                  or (i.role == "input" and tuple(i.names or ()) == ("T",))), None)
    runs = tuple(tuple(r) for r in getattr(sizes, "batch_sizes", ())) if sizes is not None else ()
    if T is None and sizes is not None:  # a PackedSequence: its batch_sizes has one entry per time step
        T = int(sizes.shape[0])
    if bs is None and batched:
        bs = _bs_from_state(conv, calls)
    if runs and bs is None:
        bs = runs[0][0]
    one_step = all(_sizes_from_input(conv, i)[0] == 1 for i in (_role(c, "input") for c in calls)
                   if i is not None)
    if not (conv.cell or (len(calls) > 1 and one_step)):
        # a packed batch runs as many steps as its longest sequence: T only where that is the trace's T (a
        # batch padded longer than its longest sequence has T=6 and 5 steps)
        dim = "" if runs and t_sizes and T not in t_sizes else "T"
        return Panel(conv, T, bs, batched, calls[0].path, runs=runs, calls=len(calls), loop_dim=dim)
    phase, sites = _phases(calls, by_index)
    steps = []
    for k, c in enumerate(calls):
        x = _role(c, "input")
        prev = getattr(calls[k - 1], "index", None) if k else None
        feed = _feed(x, prev) if x is not None and prev is not None else Feed.DATA
        out = next((o for o in getattr(c, "outputs", ()) if o.role in ("output", "h_1")), None)
        steps.append(Step(getattr(c, "index", k), _fmt(x), _fmt(out), feed, phase[k]))
    T = len(calls) if conv.cell or len(calls) > 1 else T
    span = [by_index[i] for i in range(getattr(calls[0], "index", 0), getattr(calls[-1], "index", -1) + 1)
            if i in by_index]
    # the steps of a cell are time steps when its loop reads one step of a dim each time: the dim's name, or
    # T for an unnamed one while T names no other size in the trace (a target of 5 beside a source T=7 is not T)
    dim = "T"
    if T is not None and len(calls) > 1:  # each step after the first: the calls since the layer's last call
        ends = {getattr(c, "index", 0) for c in calls[:-1]}
        blocks: list[list[Any]] = [[] for _ in calls[1:]]
        m = -1  # span starts at the first call: what follows call m (up to the next) is step m + 1's
        for x in span:
            if m >= 0:
                blocks[m].append(x)
            if getattr(x, "index", 0) in ends:
                m += 1
        dim = loop_dim(blocks[0], len(calls), others=blocks[1:]) or (
            loop_dim(blocks[0], len(calls), unnamed="T", others=blocks[1:]) if set(t_sizes) <= {len(calls)} else "")
    if conv.cell and batched:  # a loop over packed data: each call's own batch size
        sizes_of = [_sizes_from_input(conv, _role(c, "input"))[1] if _role(c, "input") is not None else None
                    for c in calls]
        if None not in sizes_of and len(set(sizes_of)) > 1:
            runs = _runs([int(n) for n in sizes_of if n is not None])
    return Panel(conv, T, bs, batched, calls[0].path, steps=tuple(steps), phases=sites, calls=len(calls),
                 runs=runs, loop_dim=dim)


def _feed(x: Any, prev: int) -> Feed:
    """How input ``x`` was computed from the results of call ``prev`` (the lane's previous step).

    Through an integer tensor computed from them (``TensorInfo.tokens``: argmax, topk, sampling) it is a
    token fed back (:attr:`Feed.TOKEN`); with no integer tensor between, the state read again by the input's
    ops (:attr:`Feed.STATE`, e.g. attention over h). A record without ``tokens`` (a trace from before they
    were recorded, a stand-in) says only that it was fed back (:attr:`Feed.BACK`).
    """
    if not any(ci == prev for ci, _ in getattr(x, "flow", ())):
        return Feed.DATA
    tokens = getattr(x, "tokens", None)
    if tokens is None:
        return Feed.BACK
    return Feed.TOKEN if prev in tokens else Feed.STATE


def _runs(values: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Run-length code: ``[3, 3, 2]`` -> ``((3, 2), (2, 1))``."""
    out: list[tuple[int, int]] = []
    for v in values:
        out[-1:] = [(v, out[-1][1] + 1)] if out and out[-1][0] == v else out[-1:] + [(v, 1)]
    return tuple(out)


def panels_from_trace(trace: Any) -> list[Panel]:
    """One :class:`Panel` per recurrent module in ``trace`` (in order of first call).

    >>> from types import SimpleNamespace as NS
    >>> conv = Conventions("GRU", cell=True, input_size=4, hidden_size=8)
    >>> call = NS(path="cell", type="GRUCell", kind="module", conventions=conv, index=0, parent=None,
    ...           inputs=[NS(role="input", shape=(2, 4), names=None)], outputs=[])
    >>> panels_from_trace(NS(calls=[call] * 7))[0].T
    7

    A cell called repeatedly is one cell unrolled over its calls, and so is a layer whose every
    call is one step; a layer called repeatedly over whole sequences is drawn for its first call.
    """
    return lanes(trace)[0]
