"""A hand-written loop in a trace, drawn as one RNN cell unrolled over its steps.

>>> import torch
>>> from shapeviz.gallery.models import CharRNNScratch
>>> from shapeviz.tracing.session import trace
>>> t = trace(CharRNNScratch(hidden=16), torch.randint(0, 28, (2, 5)), torch.zeros(2, 16), ops=True)
>>> p = loop_panel(t)
>>> p.T, p.bs, p.conv.hidden_size
(5, 2, 16)
"""

from __future__ import annotations

from typing import Any

from shapeviz.core.model import Conventions
from shapeviz.render.panels import Panel

__all__ = ["find_loop", "loop_panel"]


def loop_panel(trace: Any) -> Panel | None:
    """The hand-written loop of ``trace`` as one RNN cell unrolled over its steps, or None (see
    :func:`find_loop`, which also says why)."""
    found = find_loop(trace)
    return found if isinstance(found, Panel) else None


def find_loop(trace: Any) -> Panel | str:
    """A hand-written loop drawn as one RNN cell unrolled over its steps, or one line saying why the
    trace holds none that can be drawn.

    The loop is the longest run of repeated steps: of ops (``ops=True``), else of all the calls (the
    classic char-RNN tutorial calls an ``nn.Module`` of ``nn.Linear`` layers once per character). Its
    state is what one step hands the next (an input of step 2 produced inside step 1); its input is
    the step's other ``(bs, ·)`` operand that is not carried from the step before (one step of a
    sequence, ``x[t]``, when there is one).
    """
    calls = list(trace.calls)
    if not all(hasattr(c, "signature") and hasattr(c, "index") for c in calls):
        return "the calls are not a shapeviz Trace's (no signatures to find repeated steps by)"
    ops = [c for c in calls if getattr(c, "kind", "") == "op"]
    t_sizes = set(getattr(trace, "sizes", {}).get("T") or ())
    found = _loop(ops, t_sizes) if ops else ""
    if isinstance(found, Panel):
        return found
    found = _loop([c for c in calls if getattr(c, "depth", 0) > 0 or c is not calls[0]], t_sizes)
    if isinstance(found, Panel):
        return found
    if not ops and not getattr(trace, "ops", True):
        return found + " (traced without ops=True: only module calls were recorded)"
    return found


def _loop(seq: list[Any], t_sizes: set[int]) -> Panel | str:
    from shapeviz.render.table import group_repeats, loop_dim

    runs = [r for r in group_repeats(seq) if r[2] >= 2] if seq else []
    if not runs:
        return "no step repeats (nothing was called twice in a row with the same shapes)"
    start, length, count = max(runs, key=lambda r: (r[2], r[1]))
    first, second = seq[start:start + length], seq[start + length:start + 2 * length]
    inside = {c.index for c in first}

    def carried(info: Any) -> bool:
        return getattr(info, "produced_by", None) in inside

    state_pos = next(((i, j) for i, c in enumerate(second) for j, info in enumerate(c.inputs)
                      if carried(info) and len(info.shape) in (1, 2)), None)
    if state_pos is None:
        return f"the {count} repeated steps hand no (bs, h) state from one step to the next"
    state = second[state_pos[0]].inputs[state_pos[1]]
    bs = int(state.shape[0]) if len(state.shape) == 2 else None
    cands = [first[i].inputs[j] for i, c in enumerate(second) for j, info in enumerate(c.inputs)
             if (i, j) != state_pos and not carried(info) and j < len(first[i].inputs)
             and len(info.shape) == len(state.shape) and (bs is None or info.shape[0] == bs)]
    x = next((i for i in cands if getattr(i, "step", None)), cands[0] if cands else None)
    if x is None:
        return f"the {count} repeated steps carry a state {state.format()} but read no per-step input of its batch"
    head = first[0]
    source = getattr(head, "source", "") or getattr(head, "site", "") or "your code"
    conv = Conventions("RNN", cell=True, input_size=int(x.shape[-1]), hidden_size=int(state.shape[-1]),
                       label=f"hand-written loop at {source} (drawn as one cell)")
    out = _loop_output(seq, start, length, count, state) or _step_result(first, state)
    # T when the loop reads one step of a dim each time (named T, or unnamed while T names no other size)
    dim = loop_dim(first, count, others=[second]) or (
        loop_dim(first, count, unnamed="T", others=[second]) if t_sizes <= {count} else "")
    return Panel(conv, count, bs, bs is not None, path="", step_in=x.format(), step_out=out, loop_dim=dim)


def _step_result(first: list[Any], state: Any) -> str:
    """A step's own result besides its state: another result of the outermost call of the step that
    returns the state (the tutorial's ``output, hidden = rnn(x_t, hidden)``); "" when there is none."""
    top = min(getattr(c, "depth", 0) for c in first)
    for c in first:
        outs = list(getattr(c, "outputs", ()))
        if getattr(c, "depth", 0) == top and any(tuple(o.shape) == tuple(state.shape) for o in outs):
            other = next((o for o in outs if tuple(o.shape) != tuple(state.shape)), None)
            if other is not None:
                return other.format()
    return ""


def _loop_output(ops: list[Any], start: int, length: int, count: int, state: Any) -> str:
    """What one step of a loop hands on besides its state: a result of the step that code after the
    loop reads (the seeds' per-step logits, gathered by ``torch.cat``); "" when there is none."""
    loop = {c.index for c in ops[start:start + length * count]}
    for c in ops[start + length * count:]:
        for info in c.inputs:
            if getattr(info, "produced_by", None) in loop and tuple(info.shape) != tuple(state.shape):
                return info.format()
    return ""
