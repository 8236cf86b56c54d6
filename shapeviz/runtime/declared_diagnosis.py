"""Which mistake a call of a declared layer is, and how it is fixed: the slow path for ``sv.recurrent`` layers
whose conventions are not torch's (those that are get torch's own diagnosis).

>>> import torch, torch.nn as nn
>>> from shapeviz.core.declared import declare, undeclare
>>> from shapeviz.core.model import conventions
>>> class Scratch(nn.Module):
...     def __init__(self) -> None:
...         super().__init__()
...         self.n_in, self.n_h = 28, 32
>>> _ = declare(Scratch, input="T bs emb", state=("bs h",), sizes={"emb": "n_in", "h": "n_h"})
>>> m = Scratch()  # fed (bs=4, T=7, emb) with its state (bs=4, h): laid out batch-first
>>> err = diagnose_declared(m, conventions(m), torch.randn(4, 7, 28), (torch.zeros(4, 32),), None, None)
>>> err.code, err.hints[0]
('batch_first_swap', 'x = x.transpose(0, 1)  # (bs, T, emb) -> (T, bs, emb)')
>>> undeclare(Scratch)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from shapeviz._errors import ShapeError
from shapeviz.core.callfit import call_rule, dtype_fits, input_shape, state_batch, state_parts, state_shapes
from shapeviz.core.evidence import cell_swapped
from shapeviz.core.model import Conventions, module_weight
from shapeviz.runtime.diagnosis import batch_said, cell_swap_error, swap_evidence, time_as_batch

__all__ = ["diagnose_declared"]


class _Call:
    """What the diagnosis knows about one call of a declared layer."""

    def __init__(self, conv: Conventions, decl: dict[str, int] | None, path: str | None) -> None:
        self.conv = conv
        self.lay = conv.layout
        self.rule = call_rule(conv)  # what the call was expected to be: the one rule's (core.callfit)
        self.decl = decl or {}
        self.where = f"{path}: {conv.label}" if path else conv.label
        self.T: int | None = None
        self.bs: int | None = None
        self.var = conv.kind.lower()

    def named(self, arg: str) -> str:
        return self.conv.named(arg, self.T, self.bs)

    def zeros(self, arg: str) -> str:
        shape = self.conv.shapes(self.T, self.bs)[arg]
        names = self.conv.dim_exprs()[arg]
        return "(" + ", ".join(n if v is None else str(v) for n, v in zip(names, shape)) + ")"

    def rebuild(self, dim: str, got: int) -> str:
        """The hint that builds the module for the size given: ``or build the RNNScratch with num_inputs=27``."""
        d = self.conv.declaration
        src = dict(d.sizes).get(dim) if d is not None else None
        if isinstance(src, str) and src.isidentifier():
            return f"or build the {self.conv.kind} with {src}={got} (its {dim})"
        return f"or build the {self.conv.kind} with {dim}={got}"

    def err(self, code: str, arg: str, actual: Any, hints: list[str], detail: str,
            expected: str | None = None) -> ShapeError:
        if isinstance(actual, Tensor):
            actual = tuple(actual.shape)
        context = []
        if self.decl:
            context.append("declared: " + ", ".join(f"{k}={v}" for k, v in self.decl.items()))
        context.append(f"declared with sv.recurrent({self.conv.kind}, {self.conv.declaration.spec})"  # type: ignore[union-attr]
                       if self.conv.declaration is not None else "")
        return ShapeError(module=self.where, argument=arg, expected=expected or self.named(arg), actual=actual,
                          code=code, hints=hints, detail=detail, context=[c for c in context if c])


def diagnose_declared(module: torch.nn.Module, conv: Conventions, x: Any, s: Any, decl: dict[str, int] | None,
                      path: str | None) -> ShapeError | None:
    """The :class:`ShapeError` for a call of a declared layer that does not fit (None when it finds no fault)."""
    c = _Call(conv, decl, path)
    lay = c.lay
    seq = lay.seq_text
    if not isinstance(x, Tensor):
        return c.err("input_ndim", "input", type(x).__name__, [f"x = torch.as_tensor(x)  # a {seq} float tensor"],
                     f"expected a Tensor, got {type(x).__name__}")
    w = module_weight(module, lay)
    sh = tuple(x.shape)
    if not x.dtype.is_floating_point and not x.dtype.is_complex and w is not None:
        return c.err("dtype", "input", x, [f"x = embedding(tokens)  # ids -> {seq}",
                                           f"or x = F.one_hot(tokens, num_classes={conv.input_size}).float()"],
                     f"got integer {x.dtype} data: token ids must be embedded or one-hot encoded first",
                     expected=f"{c.named('input')} of dtype {w.dtype}")
    if len(sh) != c.rule.nd_batched:
        return c.err("input_ndim", "input", x, [f"x = x.reshape{c.zeros('input')}  # a {conv.kind} takes {seq}"],
                     f"expected {lay.batched_ndim} dims {seq}, received a {len(sh)}-dim tensor")
    c.bs = sh[lay.bs_axis]
    c.T = None if lay.t_axis is None else sh[lay.t_axis]
    parts = None if s is None else state_parts(c.rule, s)
    state_bs = state_batch(c.rule, s)
    bad = _swap(c, x, sh, state_bs)
    if bad is not None:
        return bad
    want = input_shape(c.rule, c.T, c.bs)
    for i, (got, size) in enumerate(zip(sh, want, strict=True)):  # type: ignore[arg-type]
        if size is not None and got != size:
            name = conv.dim_exprs()["input"][i]
            hints = [f"x = proj(x)  # nn.Linear({got}, {size}) maps {name}={got} -> {size}", c.rebuild(name, got)]
            if size in sh:
                j = sh.index(size)
                order = list(range(len(sh)))
                order[i], order[j] = order[j], order[i]
                hints.insert(0, f"x = x.permute{tuple(order)}  # {name}={size} is dim {j}, it must be dim {i}")
            return c.err("input_size", "input", x, hints, f"dim {i} ({name}) is {got}, but {conv.kind}'s {name} "
                         f"is {size}")
    if c.T == 0:
        return c.err("input_ndim", "input", x, [f"if x.shape[{lay.t_axis}] > 0: out = {c.var}(x)  # skip empty ones"],
                     "an empty sequence: the time dim T is 0", expected=f"{c.named('input')} with T >= 1")
    if w is not None:
        bad = _dtype_device(c, "input", x, w.dtype, w.device, "weights")
        if bad is not None:
            return bad
    return None if s is None else _state(c, x, s, parts)


def _swap(c: _Call, x: Tensor, sh: tuple[int, ...], state_bs: int | None) -> ShapeError | None:
    """``batch_first_swap``: the call's own state, or declared sizes lining up as a whole, say T and bs swapped."""
    lay, conv = c.lay, c.conv
    if lay.cell:
        if c.decl and cell_swapped(c.decl, sh[lay.bs_axis], state_bs):
            return cell_swap_error(c, x, sh[lay.bs_axis], "...")
        return None
    assert c.T is not None and c.bs is not None and lay.t_axis is not None
    via = swap_evidence(x, lay.t_axis, lay.bs_axis, c.T, c.bs, c.decl, state_bs)  # the same evidence as torch's
    if via is None:
        return None
    c.T, c.bs = c.bs, c.T
    a, b = sorted((lay.t_axis, lay.bs_axis))
    other = " ".join({"T": "bs", "bs": "T"}.get(d, d) for d in lay.input_dims)
    return c.err("batch_first_swap", "input", x,
                 [f"x = x.transpose({a}, {b})  # {lay.swapped_text} -> {lay.seq_text}",
                  f"or declare the layer the other way: sv.recurrent({conv.kind}, input={other!r}, ...)"],
                 f"the input is laid out {lay.swapped_text}, but {conv.kind} takes {lay.seq_text} (evidence: {via})")


def _state(c: _Call, x: Tensor, s: Any, parts: tuple[Any, ...] | None) -> ShapeError | None:
    conv = c.conv
    names = conv.state_names
    want_text = ", ".join(f"{n} {c.named(n)}" for n in names)
    if parts is None:
        if c.rule.as_tuple:
            n = len(s) if isinstance(s, (tuple, list)) else type(s).__name__
            parens = ", ".join(f"torch.zeros{c.zeros(n_)}" for n_ in names)
            return c.err("state_type", names[0], f"{type(s).__name__} of {n}" if isinstance(s, (tuple, list))
                         else type(s).__name__,
                         [f"{c.var}(x, ({parens}{',' if len(names) == 1 else ''}))  # a tuple of {len(names)}"],
                         f"{conv.kind} takes its state as a tuple of {len(names)} tensor"
                         f"{'s' if len(names) > 1 else ''} ({', '.join(names)})", expected=f"({want_text})")
        got = f"{type(s).__name__} of {len(s)}" if isinstance(s, (tuple, list)) else type(s).__name__
        return c.err("state_type", names[0], got, [f"{c.var}(x, h0)  # one tensor {c.named(names[0])}"],
                     f"{conv.kind} takes its state as one tensor", expected=want_text)
    want = dict(zip(names, state_shapes(c.rule, c.T, c.bs), strict=True))
    dims = conv.dim_exprs()
    for name, t in zip(names, parts, strict=True):
        short = name.replace("_", "")
        if not isinstance(t, Tensor):
            return c.err("state_type", name, type(t).__name__, [f"{short} = torch.zeros{c.zeros(name)}"],
                         f"expected a Tensor, got {type(t).__name__}")
        sh = tuple(t.shape)
        if len(sh) != len(want[name]):
            return c.err("hidden_ndim", name, t, [f"{short} = torch.zeros{c.zeros(name)}"],
                         f"{conv.kind}'s state {name} is {len(want[name])}-D {c.named(name)}; got {len(sh)}-D")
        axis = dims[name].index("bs")
        if sh[axis] != c.bs:
            hints = [f"{short} = torch.zeros{c.zeros(name)}  # build the state for this batch size"]
            if c.bs is not None and sh[axis] > c.bs:
                index = ":, " * axis + f":{c.bs}"
                hints.insert(0, f"{short} = {short}[{index}]  # the last batch of an epoch can be smaller")
            hints += time_as_batch(c, sh[axis])
            return c.err("batch_mismatch", name, t, hints, f"its batch is {sh[axis]}, but the input's {batch_said(c)}")
        for i, (got, size) in enumerate(zip(sh, want[name], strict=True)):
            if size is not None and got != size:
                dim = dims[name][i]
                return c.err("hidden_size", name, t, [f"{short} = torch.zeros{c.zeros(name)}", c.rebuild(dim, got)],
                             f"dim {i} ({dim}) is {got}, but {conv.kind}'s {dim} is {size}")
        bad = _dtype_device(c, name, t, x.dtype, x.device, "input")
        if bad is not None:
            return bad
    return None


def _dtype_device(c: _Call, arg: str, t: Tensor, dtype: torch.dtype, device: torch.device,
                  ref: str) -> ShapeError | None:
    short = "x" if arg == "input" else arg.replace("_", "")
    if not dtype_fits(t.dtype, dtype, t.device):
        return c.err("dtype", arg, t, [f"{short} = {short}.to({dtype})  # or {c.var}.to({t.dtype})"],
                     f"dtype {t.dtype} does not match the dtype of the {ref}, {dtype}",
                     expected=f"{c.named(arg)} of dtype {dtype}")
    if t.device != device:
        return c.err("device", arg, t, [f"{short} = {short}.to({str(device)!r})"],
                     f"on {t.device}, but the {ref} {'are' if ref.endswith('s') else 'is'} on {device}",
                     expected=f"{c.named(arg)} on {device}")
    return None
