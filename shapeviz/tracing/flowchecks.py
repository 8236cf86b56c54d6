"""The ``ops=True`` flow's checks of single ops, each given the names the flow knows for its operands (where each
dim came from, :func:`~shapeviz.tracing.flow.known_names`): a loss whose logits and targets were flattened in
different orders, CTC given batch-first log-probabilities, a padded batch packed as the other layout, and a
batched matmul whose operands' batch dims are different things.

>>> import torch
>>> check_loss("cross_entropy", ["T*bs", None], ["bs*T"], torch.zeros(6, 3), torch.zeros(6))
Traceback (most recent call last):
...
shapeviz.ShapeError: [flatten_order] loss: cross_entropy: argument `target`
...
>>> reordered("bs*2", "2*bs"), reordered("bs*2", "bs*2"), reordered("T", "bs")
(True, False, False)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from shapeviz._errors import ShapeError, ShapeWarning
from shapeviz.core.evidence import bases_of, provenance_swapped
from shapeviz.core.model import Conventions
from shapeviz.tracing.dimparts import read_as_time
from shapeviz.tracing.sites import user_frame

__all__ = ["check_ctc", "check_loss", "check_pack", "check_rows", "check_time_axis", "reordered", "scrambled_error",
           "site", "warn"]

Names = Sequence[str | None]


def reordered(a: str | None, b: str | None) -> bool:
    """Are ``a`` and ``b`` the same product of dims in another order (``T*bs`` and ``bs*T``, ``2*bs`` and
    ``bs*2``)?"""
    return bool(a and b and a != b and "*" in a and "*" in b and sorted(a.split("*")) == sorted(b.split("*")))


def check_pack(names: Names | None, x: torch.Tensor, batch_first: bool) -> None:
    """A padded batch packed with the wrong ``batch_first``: its steps' dim comes from the model input's bs."""
    if names is None or x.dim() < 2:
        return
    if provenance_swapped(names, 1 if batch_first else 0, 0 if batch_first else 1):
        laid, flag = ("(T, bs, …)", "batch_first=False") if batch_first else ("(bs, T, …)", "batch_first=True")
        raise ShapeError(module="pack_padded_sequence", argument="input", expected=f"the steps at dim "
                         f"{1 if batch_first else 0}", actual=tuple(x.shape), code="packed",
                         detail=f"the padded batch is laid out {laid} (evidence: its dim {1 if batch_first else 0}"
                                " comes from the model input's bs), but it is packed as the other layout: "
                                "each sequence is cut into another's steps (it trains, silently wrong)",
                         hints=[f"pack_padded_sequence(x, lengths, {flag})  # x is {laid}"])


def check_ctc(names: Names | None, log_probs: torch.Tensor) -> None:
    """CTC reads ``(T, bs, C)``: a ``(bs, T, C)`` (dim 0 the model input's bs) runs where bs == T, wrongly."""
    if names is not None and log_probs.dim() == 3 and provenance_swapped(names, 0, 1):
        raise ShapeError(module="loss: ctc_loss", argument="log_probs", expected="(T, bs, C): time first",
                         actual=tuple(log_probs.shape), code="batch_first_swap",
                         detail="the log-probabilities are laid out (bs, T, C) (evidence: their dim 0 comes "
                                "from the model input's bs), but CTC reads dim 0 as time",
                         hints=["log_probs = log_probs.transpose(0, 1)  # (bs, T, C) -> (T, bs, C)"])


def check_loss(base: str, names: Names | None, target_names: Names | None, logits: Any, target: Any) -> None:
    """Logits' rows and targets' rows flattened in different orders (``T*bs`` against ``bs*T``)."""
    if not names or not target_names or not reordered(names[0], target_names[0]):
        return
    rows, trows = str(names[0]), str(target_names[0])
    lead = ", ".join(rows.split("*"))
    fix = ("Y.T.reshape(-1)  # targets (bs, T) -> rows in T*bs order, like the logits" if rows == "T*bs"
           else "Y.reshape(-1)  # targets (bs, T) -> rows in bs*T order, like the logits" if rows == "bs*T"
           else f"flatten the targets in the order {rows}: permute them first, then reshape(-1)")
    raise ShapeError(module=f"loss: {base}", argument="target",
                     expected=f"rows ({rows}={logits.shape[0]},) in the logits' order",
                     actual=f"rows ({trows}={target.shape[0]},): the same dims flattened in another order",
                     code="flatten_order",
                     detail=f"the logits' rows are {rows} but the targets' rows are {trows}: every row is "
                            "scored against another position's target (it trains, silently wrong)",
                     hints=[fix, f"or make the logits {trows}: logits.reshape({lead}, -1).transpose(0, 1)"
                            ".reshape(-1, logits.shape[-1])"])


_ARITH = frozenset({"add", "sub", "mul", "div", "truediv", "true_divide", "radd", "rsub", "rmul", "rtruediv",
                    "iadd", "isub", "imul", "itruediv", "multiply", "subtract", "divide", "maximum", "minimum"})
_JOINED = frozenset({"cat", "concat", "concatenate", "stack"})
_PAIRED = _ARITH | {"bmm", "matmul", "masked_fill", "where"}  # ops compared (built once: this runs at every op)


def _clash(x: str | None, y: str | None) -> bool:
    """Two dims at one place that are different things by provenance: the model input's ``T`` against its ``bs``,
    or one product in two orders (``T*bs``, ``bs*T``)."""
    if not (x and y):
        return False
    bx, by = bases_of(x), bases_of(y)  # T-1 (x[:, 1:]) is made of T
    return (len(bx) == len(by) == 1 and bx != by and bx | by == {"T", "bs"}) or reordered(x, y)


def check_rows(op: str, base: str, args: tuple, kwargs: dict, tensors: list[torch.Tensor],
               names_of: Callable[[torch.Tensor], Names | None]) -> None:
    """Operands whose dims at one place are different things by provenance, where the sizes agree and torch runs
    it: a batched matmul's batch dims, a ``cat``'s or ``stack``'s other dims (a seq-first ``(T, bs, f)`` joined
    with a batch-first ``(bs, T, z)``), an elementwise op's aligned dims (not one broadcast from size 1), a
    ``masked_fill``'s or ``where``'s mask against the tensor it masks.

    >>> a, b = torch.zeros(4, 4, 2), torch.zeros(4, 4, 3)
    >>> names = {id(a): ["T", "bs", None], id(b): ["bs", "T", None]}
    >>> try:
    ...     check_rows("cat", "cat", ([a, b], 2), {}, [a, b], lambda t: names[id(t)])
    ... except ShapeError as e:
    ...     print(e.code, e.argument)
    batch_mismatch tensors[1]
    """
    if len(tensors) < 2 or (base not in _JOINED and (len(tensors) > 2 + (base == "where") or base not in _PAIRED)):
        return
    if base in ("bmm", "matmul") and not all(t.dim() == 3 for t in tensors):
        return
    names = [names_of(t) for t in tensors]
    cut = None
    if base in _JOINED and base != "stack":
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        cut = dim % tensors[0].dim() if isinstance(dim, int) and tensors[0].dim() else None
    first = next((k for k, n in enumerate(names) if n is not None), None)
    if first is None:
        return
    a, na = tensors[first], names[first]
    for k, (b, nb) in enumerate(zip(tensors, names)):
        if k == first or nb is None or (base in _JOINED and b.dim() != a.dim()):
            continue
        for i in range(1, min(a.dim(), b.dim()) + 1):  # aligned from the right, as broadcasting aligns them
            if base in ("bmm", "matmul") and i != 3:
                continue
            if a.dim() - i == cut or a.shape[-i] != b.shape[-i] or a.shape[-i] == 1:
                continue
            x, y = na[-i], nb[-i]
            if not _clash(x, y):
                continue
            where = "batch dims" if base in ("bmm", "matmul") else "dims"
            j = next((j for j, t in enumerate(args) if t is b), 1)  # its place among the op's arguments
            arg = f"tensors[{k}]" if base in _JOINED else ("condition", "input", "other")[min(j, 2)] \
                if base == "where" else ("input", "mask")[min(j, 1)] if base == "masked_fill" else "other"
            raise ShapeError(module=f"op: {op}", argument=arg,
                             expected=f"{x} at dim {a.dim() - i}, like operand {first}",
                             actual=tuple(b.shape), code="batch_mismatch",
                             detail=f"operand {first}'s dim {a.dim() - i} is {x} but operand {k}'s is {y}: the {where} "
                                    "pair rows of different things (it runs where the sizes agree, silently wrong)",
                             hints=[f"transpose or permute the operand whose dim {a.dim() - i} is not "
                                    f"{'bs' if 'bs' in (x, y) else x} (x.transpose(0, 1) of a (T, bs, …) tensor)"])


def site() -> tuple[str, int, str, dict]:
    """Where in your code an op ran: file, line, module name and the module's warning registry (what
    ``warnings.warn`` would use there; no frame is kept)."""
    frame = user_frame()
    if frame is None:
        return "<unknown>", 0, "shapeviz", {}
    return (frame.f_code.co_filename, frame.f_lineno, frame.f_globals.get("__name__", "__main__"),
            frame.f_globals.setdefault("__warningregistry__", {}))


def warn(code: str, what: str, fix: str, where: tuple[str, int, str, dict] | None = None) -> None:
    """A ShapeWarning at the line of your code that ran the op (``where``: where it ran, for one said later)."""
    file, line, module, registry = where or site()
    warnings.warn_explicit(ShapeWarning(code, f"{what}; use: {fix}"), ShapeWarning, file, line, module, registry)


def scrambled_error(name: str, var: str, src: tuple[int, ...], names: Names, shape: tuple[int, ...],
                    scrambled: list[str], params: str) -> ShapeError:
    """The ``scrambled_view`` of ``var.name(params)``, a view of ``src`` (dims ``names``) as ``shape``; the hint
    is the transpose or permute that moves the data where the sizes tell which.

    >>> scrambled_error("view", "e", (4, 7), ["bs", "T"], (7, 4), ["bs", "T"], "7, 4").hints
    ['e.transpose(0, 1)  # (bs=4, T=7) -> (T, bs): moves the data']
    """
    scrambled = [f"{n} (a count of copies or joined pieces)" if n.isdigit() else n for n in scrambled]
    shown = "(" + ", ".join(f"{n}={s}" if n else str(s) for n, s in zip(names, src)) + ")"
    hints = []
    used: set[int] = set()
    perm: list[int] = []
    for size in shape:  # the dims the requested shape names, by their sizes
        k = next((k for k, s in enumerate(src) if s == size and k not in used), None)
        if k is None:
            break
        used.add(k)
        perm.append(k)
    if len(perm) == len(src):
        moved = [k for i, k in enumerate(perm) if k != i]
        meant = "(" + ", ".join(names[k] or str(src[k]) for k in perm) + ")"
        if len(moved) == 2:
            a, b = moved
            hints.append(f"{var}.transpose({min(a, b)}, {max(a, b)})  # {shown} -> {meant}: moves the data")
        else:
            hints.append(f"{var}.permute({', '.join(map(str, perm))})  # {shown} -> {meant}: moves the data")
    else:
        hints.append("permute the dims into the order you want first, then reshape (a view only relabels)")
    return ShapeError(module=f"op: {name}", argument="input", expected="a permute/transpose of the named dims",
                      actual=shape, code="scrambled_view",
                      detail=f"{var}.{name}({params}) of {shown} relabels {', '.join(scrambled)} without moving data: "
                             "the result mixes positions (it trains, silently wrong)",
                      hints=hints)


def _into_features(names: Names, want: Sequence[str]) -> tuple[str, str] | None:
    """``(axis, its name)`` where a layer's time or batch axis (``want``: the layer's input dims) is a cut of
    another dim (a ``[`` part, without that axis in it) while that axis of the model input sits in the features:
    ``(bs, C, F, T).reshape(bs, T, C*F)`` without the permute reads ``3*F[4:8]`` as time, ``F[1:4]*T`` as
    features. A stacked-frames reshape keeps a part of T at the time axis too (``T[2:8]``, ``T[1:2]*emb``): not it.

    >>> _into_features(["bs", "3*F[4:8]", "F[1:4]*T"], ("bs", "T", "emb"))
    ('T', '3*F[4:8]')
    >>> _into_features(["bs", "T[2:8]", "T[1:2]*emb"], ("bs", "T", "emb")) is None
    True
    """
    feats = names[-1] if len(names) == len(want) else None
    if not feats:
        return None
    for axis in ("T", "bs"):
        cut = names[want.index(axis)] if axis in want else None
        if cut and "[" in cut and axis not in bases_of(cut) and axis in bases_of(feats):
            return axis, cut
    return None


def check_time_axis(names: Names, conv: Conventions, x: torch.Tensor, views: dict[str, tuple],
                    path: Callable[[], str | None]) -> None:
    """A recurrent layer's input (dims ``names``) whose time axis a view made of (parts of) bs:
    ``(bs, T, emb).view(T, bs, emb)`` where the sizes divide (with 7 steps and 4 sequences the view itself
    raises); ``views``: the view that made each cut name, ``path``: the layer's path, asked only to raise.

    >>> import torch.nn as nn
    >>> from shapeviz.core.model import conventions
    >>> check_time_axis(["bs[0]", "bs[1]", None], conventions(nn.GRU(4, 6)), torch.zeros(2, 3, 4), {}, lambda: "enc")
    Traceback (most recent call last):
    ...
    shapeviz.ShapeError: [scrambled_view] enc: GRU(4, 6): argument `input`
    ...
    """
    if not any(n and ("[" in n or "*" in n) for n in names) or conv.cell:
        return
    want = conv.dim_exprs(batched=conv.layout.is_batched(x.dim()) is True)["input"]
    if "T" not in want or len(want) != x.dim():
        return
    got = names[want.index("T")]
    lost = _into_features(names, want)
    if lost is not None:  # checked first: a cut of another dim at the time axis is no view of bs
        axis, cut = lost
        if cut in views:
            raise scrambled_error(*views[cut])
        where = path()
        raise ShapeError(module=f"{where}: {conv.label}" if where else conv.label, argument="input",
                         expected=f"a {'time' if axis == 'T' else 'batch'} axis made of {axis}", actual=tuple(x.shape),
                         code="scrambled_view",
                         detail=f"the {'time' if axis == 'T' else 'batch'} axis of this input is {cut}, a cut of "
                                f"another dim, while the model input's {axis} went into its features ({names[-1]}): a "
                                "reshape relabelled the data without moving it (it trains, silently wrong)",
                         hints=["permute the dims into the order you want first, then reshape (a view only "
                                "relabels): e.g. (bs, C, F, T).permute(0, 3, 1, 2).reshape(bs, T, C * F)" if axis == "T"
                                else "move bs next to where it belongs first (x.transpose(0, 1)), then reshape: a view "
                                "only relabels"])
    if not got or not read_as_time(got, "T"):
        return
    if got in views:
        raise scrambled_error(*views[got])
    where, lay = path(), conv.layout
    module = f"{where}: {conv.label}" if where else conv.label
    if "[" not in got:  # bs merged whole with another dim (windows, a cat): a batch, not a view's doing
        raise ShapeError(module=module, argument="input", expected=lay.seq_text, actual=tuple(x.shape),
                         code="batch_first_swap",
                         detail=f"the time axis of this input is {got}, a batch made of the model input's bs: "
                                f"the input is laid out {lay.swapped_text} for a layer with {lay.flag_text}",
                         hints=[f"x = x.transpose(0, 1)  # {lay.swapped_text} -> {lay.seq_text}",
                                *([lay.rebuild_hint(conv.kind)] if not conv.name else [])])
    raise ShapeError(module=module, argument="input", expected="a time axis made of T", actual=tuple(x.shape),
                     code="scrambled_view",
                     detail=f"the time axis of this input is {got}: (parts of) the model input's bs went into it, so "
                            "its steps mix sequences (it trains, silently wrong)",
                     hints=["x = x.transpose(0, 1)  # before taking steps apart or reshaping, where x is (bs, T, ...)",
                            "permute the dims into the order you want first, then reshape (a view only relabels)"])
