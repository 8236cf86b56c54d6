"""The call-fit rule: the shapes a recurrent call's state must have for its input, and whether the call fits.

>>> from shapeviz.core.model import Conventions
>>> rule = call_rule(Conventions("LSTM", cell=False, input_size=10, hidden_size=20, num_layers=2))
>>> expected(rule, (5, 3, 10), None)  # input (T=5, bs=3, emb=10): h_0 and c_0 are (layers*D=2, bs=3, h=20)
((2, 3, 20), (2, 3, 20))
>>> expected(rule, (5, 3, 9), None) is None  # emb is 9, not 10: the call does not fit
True

The one home of the rule. Every judgement of a call reads it: the fast path of an eager check (a memo over
:func:`expected`, in :mod:`shapeviz.runtime.fastcheck`), the check that runs while dynamo traces (the same
functions with dynamo's comparisons passed in as :class:`Sizes`, in :mod:`shapeviz.runtime.compiled`), layers
declared with ``sv.recurrent`` (:mod:`shapeviz.runtime.declared_check`), and the diagnosis, which reads what was
expected of each argument from :func:`state_shapes` / :func:`input_shape` and only explains which mistake it is.

A :class:`CallRule` is read once from a module's :class:`~shapeviz.core.model.Conventions`: each argument's
shape as a template of constants and the call's ``T`` and ``bs``. A call fits when its input has the batched
(or unbatched) number of dims, every constant dim of the input is the module's, ``T >= 1``, no declared size
could say the layout is swapped (:mod:`shapeviz.core.evidence`: the diagnosis then weighs the evidence), each
state tensor has the shape the template gives for the input's ``T`` and ``bs``, and dtypes and devices agree.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from shapeviz.core.dimensions import expr_size
from shapeviz.core.dtypes import castable
from shapeviz.core.evidence import cell_suspect, layer_suspect, packed_swapped
from shapeviz.core.model import Conventions

__all__ = ["EAGER", "CallRule", "Sizes", "agrees", "call_fits", "call_rule", "dtype_fits", "expected", "input_shape",
           "packed_batch", "packed_states", "state_batch", "state_parts", "state_shapes", "states_fit"]

Slot = int | str  # a template dim: a constant size, or "bs", "T" or a product such as "bs*k"
Template = tuple[Slot, ...]


@dataclass(frozen=True)
class Sizes:
    """How sizes are compared: as ints eagerly (:data:`EAGER`); while dynamo traces, symbolically (a symbolic
    size gets the guard torch's own comparison adds anyway, and declared-size evidence reads static sizes only).

    >>> EAGER.differs(3, 4), EAGER.known_zero(0), EAGER.ints(5, 3)
    (True, True, (5, 3))
    """

    differs: Callable[[Any, Any], bool]  # a != b
    shape_differs: Callable[[Any, tuple], bool]  # a shape != the expected tuple (lengths included)
    known_zero: Callable[[Any], bool]  # n == 0, certainly
    ints: Callable[..., tuple[int, ...] | None]  # the sizes as ints when each is known, else None


EAGER = Sizes(operator.ne, operator.ne, lambda n: n == 0, lambda *sizes: sizes)


@dataclass(frozen=True)
class CallRule:
    """One module's conventions as templates of its call's shapes (read once, by :func:`call_rule`).

    >>> rule = call_rule(Conventions("GRU", cell=False, input_size=4, hidden_size=6, batch_first=True))
    >>> rule.inputs[0], rule.states[0], rule.states[1]  # batched, then unbatched
    (('bs', 'T', 4), ((1, 'bs', 6),), ((1, 6),))
    """

    cell: bool
    t_axis: int  # the axis of T in a batched input (-1: a cell has none)
    bs_axis: int
    nd_batched: int
    nd_unbatched: int  # -1: no unbatched form (a declared layer)
    inputs: tuple[Template, Template | None]  # the input's template, batched and unbatched
    states: tuple[tuple[Template, ...], tuple[Template, ...] | None]  # each state tensor's, the same two ways
    state_bs_axis: int  # the axis of bs in a batched state tensor
    arity: int  # the number of state tensors
    state_ndim: int  # the number of dims of a batched state tensor
    as_tuple: bool  # the state is a tuple (an LSTM's (h, c), a declared 1-tuple), not one tensor
    loose_dtype: tuple[bool, ...]  # per state: its dtype need not be the input's (torch's LSTMCell's c_0)
    bindings: tuple[tuple[str, int], ...]  # the module's own sizes, for a template dim such as "bs*k"
    consts: tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]  # (axis, size) of the input's constant
    products: bool  # a template dim multiplies T or bs ("bs*k", declared layers only)
    cache: dict = field(default_factory=dict, compare=False, repr=False)  # (T, bs, batched) -> state shapes


def call_rule(conv: Conventions) -> CallRule:
    """The :class:`CallRule` of ``conv`` (made once per Conventions).

    >>> call_rule(Conventions("LSTM", cell=True, input_size=3, hidden_size=5)).loose_dtype
    (False, True)
    """
    rule = conv.__dict__.get("_call_rule")
    if rule is None:
        rule = conv.__dict__["_call_rule"] = _make(conv)  # a frozen dataclass's cache, as cached_property writes
    return rule


def _make(conv: Conventions) -> CallRule:
    lay = conv.layout
    sizes = conv.sizes
    names = conv.state_names

    def template(exprs: Sequence[str]) -> Template:
        return tuple(e if (size := expr_size(e, sizes)) is None else size for e in exprs)

    def forms(batched: bool) -> tuple[Template, tuple[Template, ...]]:
        exprs = conv.dim_exprs(batched)
        return template(exprs["input"]), tuple(template(exprs[n]) for n in names)

    in_b, st_b = forms(True)
    in_u, st_u = forms(False) if not lay.declared else (None, None)  # a declared layer: batched only
    loose = tuple(lay.cell and not lay.declared and i > 0 for i in range(len(names)))
    consts = tuple(tuple((i, d) for i, d in enumerate(t or ()) if isinstance(d, int)) for t in (in_b, in_u))
    products = any(isinstance(d, str) and d not in ("T", "bs") for t in (in_b, in_u, *st_b, *(st_u or ()))
                   for d in t or ())
    return CallRule(cell=lay.cell, t_axis=-1 if lay.t_axis is None else lay.t_axis, bs_axis=lay.bs_axis,
                    nd_batched=lay.batched_ndim, nd_unbatched=lay.unbatched_ndim, inputs=(in_b, in_u),
                    states=(st_b, st_u), state_bs_axis=lay.state_bs_axis,
                    arity=len(st_b), state_ndim=len(st_b[0]),
                    as_tuple=lay.state_arity > 1 or lay.state_tuple, loose_dtype=loose,
                    bindings=tuple(sizes.items()), consts=consts, products=products)  # type: ignore[arg-type]


def _fill(rule: CallRule, tpl: Template, T: Any, bs: Any) -> tuple[Any, ...]:
    """A template's shape for a call's ``T`` and ``bs``."""
    out = []
    for s in tpl:
        if isinstance(s, int):
            out.append(s)
        elif s == "bs":
            out.append(bs)
        elif s == "T":
            out.append(T)
        else:  # a product with T or bs in it ("bs*k")
            out.append(expr_size(s, {**dict(rule.bindings), "T": T, "bs": bs}))  # type: ignore[arg-type]
    return tuple(out)


def state_shapes(rule: CallRule, T: Any, bs: Any, batched: bool = True) -> tuple[tuple[Any, ...], ...]:
    """What each state tensor must be for a call of this ``T`` and ``bs`` (what the diagnosis expected).

    >>> rule = call_rule(Conventions("LSTM", cell=False, input_size=4, hidden_size=6, proj_size=3))
    >>> state_shapes(rule, 5, 2), state_shapes(rule, 5, None, batched=False)
    (((1, 2, 3), (1, 2, 6)), ((1, 3), (1, 6)))
    """
    tpls = rule.states[0] if batched else rule.states[1]
    return tuple(_fill(rule, t, T, bs) for t in tpls or ())


def input_shape(rule: CallRule, T: Any, bs: Any, batched: bool = True) -> tuple[Any, ...] | None:
    """What the input must be for a call of this ``T`` and ``bs`` (None: no such form).

    >>> input_shape(call_rule(Conventions("GRU", cell=True, input_size=4, hidden_size=6)), None, 3)
    (3, 4)
    """
    tpl = rule.inputs[0] if batched else rule.inputs[1]
    return None if tpl is None else _fill(rule, tpl, T, bs)


def expected(rule: CallRule, sh: Sequence[Any], decl: dict[str, int] | None,
             cmp: Sizes = EAGER) -> tuple[tuple[Any, ...], ...] | None:
    """The shapes the call's state tensors must have for an input of shape ``sh``, or None when ``sh`` does
    not fit: a wrong number of dims or constant dim, ``T == 0``, or a declared size that could name a layout
    mistake (the diagnosis then weighs the evidence).

    >>> rule = call_rule(Conventions("RNN", cell=False, input_size=4, hidden_size=6))
    >>> expected(rule, (7, 4), None), expected(rule, (0, 2, 4), None)  # unbatched (T=7, emb); T=0
    (((1, 6),), None)
    """
    nd = len(sh)
    if nd == rule.nd_batched:
        batched = True
        bs = sh[rule.bs_axis]
        if rule.cell:
            T = None
            if decl is not None:
                ints = cmp.ints(bs)
                if ints is not None and cell_suspect(decl, ints[0]):
                    return None
        else:
            T = sh[rule.t_axis]
            if cmp.known_zero(T):
                return None
            if decl is not None:
                ints = cmp.ints(bs, T)
                if ints is not None and layer_suspect(decl, ints[0], ints[1]):
                    return None
    elif nd == rule.nd_unbatched:
        batched, bs = False, None
        T = None if rule.cell else sh[0]
        if T is not None and cmp.known_zero(T):  # an unbatched layer input is (T, emb)
            return None
    else:
        return None
    for axis, want in rule.consts[0 if batched else 1]:
        if cmp.differs(sh[axis], want):
            return None
    if rule.products:  # a declared dim such as "bs*k": compared whole
        tpl = rule.inputs[0] if batched else rule.inputs[1]
        if cmp.shape_differs(sh, _fill(rule, tpl, T, bs)):  # type: ignore[arg-type]
            return None
    if cmp is not EAGER:  # symbolic sizes: computed, never cached
        return state_shapes(rule, T, bs, batched)
    key = (T, bs, batched)
    wants = rule.cache.get(key)
    if wants is None:
        if len(rule.cache) >= 64:
            rule.cache.clear()
        wants = rule.cache[key] = state_shapes(rule, T, bs, batched)
    return wants


def dtype_fits(dtype: Any, want: Any, device: Any) -> bool:
    """A tensor of ``dtype`` on ``device`` fits where ``want`` is expected: the same, or one torch casts to it
    there (autocast is on).

    >>> import torch
    >>> cpu = torch.device("cpu")
    >>> dtype_fits(torch.float32, torch.float32, cpu), dtype_fits(torch.float16, torch.float32, cpu)  # no autocast
    (True, False)
    """
    return dtype == want or castable(dtype, want, device)


def agrees(t: Tensor, dtype: Any, device: Any) -> bool:
    """``t`` is on ``device`` and its dtype fits ``dtype`` (:func:`dtype_fits`; None: any dtype).

    >>> import torch
    >>> agrees(torch.zeros(2), torch.float32, torch.device("cpu")), agrees(torch.zeros(2), torch.int64, None)
    (True, False)
    """
    return t.device == device and (dtype is None or dtype_fits(t.dtype, dtype, device))


def state_parts(rule: CallRule, hx: Any) -> tuple[Any, ...] | None:
    """The call's state as its parts in the rule's order (``(h_0, c_0)``, or ``(h_0,)``), or None when its
    structure is wrong (one tensor where a tuple is taken, a tuple of the wrong length, a tuple where one
    tensor is taken); the parts themselves are not judged.

    >>> rule = call_rule(Conventions("LSTM", cell=False, input_size=4, hidden_size=6))
    >>> state_parts(rule, (1, 2)), state_parts(rule, [1, 2, 3])
    ((1, 2), None)
    """
    if rule.as_tuple:
        return tuple(hx) if isinstance(hx, (tuple, list)) and len(hx) == rule.arity else None
    return None if isinstance(hx, (tuple, list)) else (hx,)


def state_batch(rule: CallRule, hx: Any) -> int | None:
    """The batch of the call's own first state tensor when it is batched (evidence that outranks declared
    sizes), else None.

    >>> import torch
    >>> rule = call_rule(Conventions("GRU", cell=False, input_size=4, hidden_size=6))
    >>> state_batch(rule, torch.zeros(1, 3, 6)), state_batch(rule, torch.zeros(1, 6))
    (3, None)
    """
    first = hx[0] if rule.as_tuple and isinstance(hx, (tuple, list)) and hx else hx
    if isinstance(first, Tensor) and first.dim() == rule.state_ndim:
        return int(first.shape[rule.state_bs_axis])
    return None


def states_fit(rule: CallRule, hx: Any, wants: tuple[tuple[Any, ...], ...], dtype: Any, device: Any,
               cmp: Sizes = EAGER) -> bool:
    """The call's state ``hx`` (None: not given) has the rule's structure, the shapes ``wants`` and the input's
    dtype and device.

    >>> import torch
    >>> rule = call_rule(Conventions("LSTM", cell=False, input_size=4, hidden_size=6))
    >>> h = torch.zeros(1, 2, 6)
    >>> states_fit(rule, (h, h), ((1, 2, 6), (1, 2, 6)), h.dtype, h.device), states_fit(rule, h, (), None, None)
    (True, False)
    """
    if hx is None:
        return True
    parts = state_parts(rule, hx)
    if parts is None:
        return False
    loose = rule.loose_dtype
    for i, t in enumerate(parts):
        if not isinstance(t, Tensor) or cmp.shape_differs(t.shape, wants[i]) or t.device != device:
            return False
        if not (loose[i] or dtype_fits(t.dtype, dtype, device)):
            return False
    return True


def call_fits(rule: CallRule, x: Any, hx: Any, ref: Tensor | None, decl: dict[str, int] | None,
              cmp: Sizes = EAGER) -> tuple[tuple[Any, ...], ...] | None:
    """The state shapes of a call ``module(x, hx)`` that fits (``ref``: the tensor whose dtype and device are
    the module's, None when it has none), or None when it does not.

    >>> import torch
    >>> rule = call_rule(Conventions("GRU", cell=True, input_size=4, hidden_size=6))
    >>> call_fits(rule, torch.randn(3, 4), torch.zeros(3, 6), torch.zeros(18, 4), None)
    ((3, 6),)
    """
    if not isinstance(x, Tensor):
        return None
    wants = expected(rule, x.shape, decl, cmp)
    if wants is None:
        return None
    if ref is not None and not agrees(x, ref.dtype, ref.device):
        return None
    return wants if states_fit(rule, hx, wants, x.dtype, x.device, cmp) else None


def packed_states(rule: CallRule, data: Any, batch_sizes: Any, decl: dict[str, int] | None
                  ) -> tuple[tuple[int, ...], ...] | None:
    """The state shapes of a call given a ``PackedSequence`` of ``data`` and ``batch_sizes``, or None when it
    does not fit (``data`` must be ``(sum(lengths), emb)``, ``batch_sizes`` a non-empty 1-D CPU tensor).

    >>> import torch
    >>> rule = call_rule(Conventions("GRU", cell=False, input_size=4, hidden_size=6))
    >>> packed_states(rule, torch.zeros(5, 4), torch.tensor([3, 2]), None)
    ((1, 3, 6),)
    """
    if rule.cell or rule.nd_unbatched < 0 or not isinstance(data, Tensor) or data.dim() != 2:
        return None
    if data.shape[1] != rule.inputs[1][-1]:  # type: ignore[index]
        return None
    sizes = packed_batch(batch_sizes)
    if sizes is None or (decl is not None and packed_swapped(decl, *sizes)):
        return None
    return state_shapes(rule, None, sizes[0])


def packed_batch(batch_sizes: Any) -> tuple[int, int] | None:
    """``(bs, steps)`` of a PackedSequence's ``batch_sizes`` (a non-empty 1-D int64 CPU tensor, as
    ``pack_padded_sequence`` makes it), or None when it is not one.

    >>> import torch
    >>> packed_batch(torch.tensor([3, 2, 2])), packed_batch(torch.tensor([]))
    ((3, 3), None)
    """
    import torch

    if (batch_sizes.dim() != 1 or batch_sizes.numel() == 0 or batch_sizes.device.type != "cpu"
            or batch_sizes.dtype != torch.int64):
        return None
    return int(batch_sizes[0]), int(batch_sizes.numel())  # a CPU tensor, as torch reads it: no device sync
