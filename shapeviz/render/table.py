"""The text table of a :class:`~shapeviz.tracing.records.Trace`: a pure, deterministic function of it.

>>> import torch, torch.nn as nn
>>> from shapeviz.tracing.session import trace
>>> print(trace_table(trace(nn.RNN(4, 8), torch.zeros(5, 2, 4))))
trace of RNN: 1 module call
#  call  shapes
0  RNN   input (T=5, bs=2, emb=4) → output (T=5, bs=2, D*h=8), h_n (layers*D=1, bs=2, h=8)
sizes: T=5, bs=2, emb=4, h=8

Repeated steps (the same calls with the same shapes, one after another, like the body of a
loop over time) are shown once, marked ``┌ × 5`` … ``└``; ``× T=5`` when the loop reads one step
of a dim named ``T`` each time (``x[:, t]``, ``for x_t in x``), the only evidence that it iterates T.
A dim named by its size alone is a guess and reads ``T?=5``; a view that relabels named dims is
marked ``⚠ scrambled_view: …``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shapeviz.render.textsafe import visible

__all__ = ["group_repeats", "loop_dim", "repeat_label", "trace_table"]

_MAX_BLOCK = 64


GUESS_LEGEND = "?: a guess from a size or shape match alone, not evidence"
"""The line under a table that shows a guessed name (``T?=5``)."""


def group_repeats(calls: Sequence[Any], max_block: int = _MAX_BLOCK) -> list[tuple[int, int, int]]:
    """Runs of repeated steps: ``(start, length, repeats)`` covering ``calls`` in order.

    >>> from types import SimpleNamespace as NS
    >>> calls = [NS(depth=0, signature=lambda s=s: s) for s in "abcbcbcd"]
    >>> group_repeats(calls)
    [(0, 1, 1), (1, 2, 3), (7, 1, 1)]

    A block is a sequence of calls equal (by ``Call.signature()``) to the ones after it; the
    longest cover wins, ties go to the shorter block. A block starts at its shallowest call.
    """
    ids: dict[Any, int] = {}
    sig = [ids.setdefault(c.signature(), len(ids)) for c in calls]
    depth = [c.depth for c in calls]
    n = len(sig)
    out: list[tuple[int, int, int]] = []
    i = 0
    while i < n:
        best_k, best_r = 1, 1
        for k in range(1, min(max_block, (n - i) // 2) + 1):
            if depth[i + k - 1] < depth[i]:  # the block would climb out of its enclosing call
                break
            block = sig[i:i + k]
            r = 1
            while sig[i + r * k:i + (r + 1) * k] == block:
                r += 1
            if r > 1 and k * r > best_k * best_r:
                best_k, best_r = k, r
        out.append((i, best_k, best_r))
        i += best_k * best_r
    return out


def loop_dim(calls: Sequence[Any], count: int, unnamed: str = "", others: Sequence[Sequence[Any]] = ()) -> str:
    """The dim a loop of ``count`` steps iterates, with evidence: one of its calls reads one step of a
    dim of that size (``x[:, t]``, ``for x_t in x``; see :mod:`shapeviz.tracing.steps`): the dim's name,
    or ``unnamed`` when the dim has no name by evidence; "" without such a step. ``others``: the calls of other
    steps of the loop, where known: each must read a step of the same dim (a greedy decoder whose first step
    reads ``tok[:, 0]`` and the others their own argmax iterates no dim of ``tok``).

    >>> from types import SimpleNamespace as NS
    >>> x_t, y_t = NS(step=("T", 5)), NS(step=("", 5))
    >>> loop_dim([NS(inputs=[x_t])], 5), loop_dim([NS(inputs=[x_t])], 4), loop_dim([NS(inputs=[NS()])], 5)
    ('T', '', '')
    >>> loop_dim([NS(inputs=[y_t])], 5), loop_dim([NS(inputs=[y_t])], 5, unnamed="T")
    ('', 'T')
    """
    found = _stepped(calls, count, unnamed)
    return found if all(_stepped(other, count, unnamed) == found for other in others) else ""


def _stepped(calls: Sequence[Any], count: int, unnamed: str) -> str:
    found = ""
    for c in calls:
        for info in getattr(c, "inputs", ()):
            step = getattr(info, "step", None)
            if step and int(step[1]) == count:
                if step[0]:
                    return str(step[0])
                found = unnamed
    return found


def repeat_label(count: int, calls: Sequence[Any] = (), others: Sequence[Sequence[Any]] = ()) -> str:
    """``"× T=5"`` when the repeated ``calls`` read one step of a dim named T of size 5 each time
    (evidence, :func:`loop_dim`), else ``"× 5"``: equal numbers are never evidence.

    >>> from types import SimpleNamespace as NS
    >>> repeat_label(5, [NS(inputs=[NS(step=("T", 5))])]), repeat_label(9, [NS(inputs=[NS(step=None)])])
    ('× T=5', '× 9')
    """
    name = loop_dim(calls, count, others=others)
    return f"× {name}={count}" if name else f"× {count}"


def _safe(text: str) -> str:
    """Text for a terminal: control characters and lone surrogates as Python escapes (``\\x1b``)."""
    return visible(text, escape=True)


def _name(call: Any) -> str:
    if call.kind == "op":
        return call.type
    if not call.path:
        return call.type
    return f"{call.path} ({call.type})" if call.path.rsplit(".", 1)[-1] != call.type else call.path


def trace_table(trace: Any, *, group: bool = True, max_rows: int | None = None) -> str:
    """The trace as a fixed-format text table (one row per call; repeated steps grouped).

    >>> import torch, torch.nn as nn
    >>> from shapeviz.tracing.session import trace
    >>> trace_table(trace(nn.GRUCell(3, 6), torch.zeros(2, 3))).splitlines()[2]
    '0  GRUCell  input (bs=2, emb=3) → h_1 (bs=2, h=6)'
    """
    calls = list(trace.calls)
    spans = group_repeats(calls) if group else [(i, 1, 1) for i in range(len(calls))]
    rows: list[tuple[str, str, str, str, str]] = []  # index, repeat mark, call, shapes, source
    for start, k, r in spans:
        others = [calls[start + m * k:start + (m + 1) * k] for m in range(1, r)]  # the loop's other steps
        for j in range(k):
            c = calls[start + j]
            if r == 1:
                mark = ""
            elif k == 1:
                mark = f"[ {repeat_label(r, calls[start:start + k], others)}"
            elif j == 0:
                mark = f"┌ {repeat_label(r, calls[start:start + k], others)}"
            else:
                mark = "└" if j == k - 1 else "│"
            shapes = c.describe() + (f"  ✗ {c.error}" if c.error else "")
            shapes += f"  ⚠ {c.flag}" if getattr(c, "flag", "") else ""
            # names come from user code or a trace file: control characters are shown, never sent to the terminal
            rows.append((str(c.index), mark, _safe("  " * c.depth + _name(c)), _safe(shapes), _safe(c.source)))
    n_mod = sum(c.kind == "module" for c in calls)
    n_ops = len(calls) - n_mod
    title = f"trace of {_safe(trace.model)}: {n_mod} module call{'s' if n_mod != 1 else ''}"
    if trace.ops:
        title += f", {n_ops} op{'s' if n_ops != 1 else ''}"
    if trace.error:
        title += f" (raised {_safe(trace.error)})"
    cut = 0
    if max_rows is not None and len(rows) > max_rows:
        cut = len(rows) - max_rows
        rows = rows[:max_rows]
    has_mark = any(row[1] for row in rows)
    has_source = any(row[4] for row in rows)
    header = ("#", "", "call", "shapes", "source")
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    lines = [title]
    for row in table:
        cells = [row[0].rjust(widths[0]) if row is not header else row[0].ljust(widths[0])]
        if has_mark:
            cells.append(row[1].ljust(widths[1]))
        cells += [row[2].ljust(widths[2]), row[3].ljust(widths[3]) if has_source else row[3]]
        if has_source:
            cells.append(row[4])
        lines.append("  ".join(cells).rstrip())
    if cut:
        lines.append(f"… {cut} more row{'s' if cut != 1 else ''}")
    if any(n.endswith("?") for c in calls for i in (*c.inputs, *c.outputs) for n in (i.names or ())):
        lines.append(GUESS_LEGEND)
    if trace.sizes:
        lines.append(_safe("sizes: " + ", ".join(f"{n}={'/'.join(str(s) for s in ss)}"
                                                    for n, ss in trace.sizes.items())))
    return "\n".join(lines)
