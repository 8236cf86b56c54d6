"""The fast path: does a call fit its recurrent module? A handful of integer compares.

>>> import torch, torch.nn as nn
>>> rnn = nn.RNN(10, 20, num_layers=2)
>>> check_call(rnn, torch.randn(5, 3, 10), torch.zeros(2, 3, 20))  # (T=5, bs=3, emb=10): fine
>>> check_call(rnn, torch.randn(5, 3, 10), torch.zeros(3, 20))
Traceback (most recent call last):
...
shapeviz.ShapeError: [hidden_ndim] RNN(10, 20, num_layers=2): argument `h_0`
...

On failure (and only then) :mod:`shapeviz.runtime.diagnosis` works out which mistake it is and builds the
message. The fast path formats nothing and never reads tensor data; a repeat call (the plan's hot path)
allocates no more than the ``torch.Size`` objects its shape reads make.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from shapeviz.core.callfit import agrees, call_rule, expected, packed_states, states_fit
from shapeviz.core.declared import declaration_of
from shapeviz.core.dimensions import DECLARED, live_declared
from shapeviz.core.model import RECURRENT_TYPES, Conventions, conventions, key_getter
from shapeviz.runtime.hotpath import checker_code, flat_memo, hot_path, no_memo, same_objects
from shapeviz.runtime.switches import env_disabled, is_compiling


class CallPlan:
    """A module's :class:`~shapeviz.core.callfit.CallRule` and the settings it was read from, and the memo of
    :func:`fit`: ``(shape, declared sizes, want_h, want_c)`` of the last input that fit (one tuple, replaced
    whole, so a thread never reads one call's shape with another call's states), with :attr:`hot`, the hot path
    made for that memo."""

    __slots__ = ("_made", "_memo", "arity", "conv", "flat", "from_dict", "getkey", "hot", "key", "ref", "rule",
                 "wname")

    def __init__(self, module: torch.nn.Module, conv: Conventions) -> None:
        self.conv = conv
        self.rule = call_rule(conv)
        self.getkey, self.from_dict = key_getter(module)
        self.key = self.getkey(module.__dict__ if self.from_dict else module)
        mid = id(module)
        self.ref = weakref.ref(module, lambda ref: _forget(mid, ref))
        self.arity = self.rule.arity
        self.wname = conv.layout.weight_name
        self._memo: tuple = (None, None, (), ())
        self._made: tuple | None = None  # the settings' objects the hot path compares with
        self.flat: tuple | None = None  # what the hot path and a checker compare a call with (hotpath.flat_memo)
        self.hot: Callable[[torch.nn.Module, Any, Any], bool] = no_memo  # until a call fits

    @property
    def memo(self) -> tuple:
        """The memo of :func:`fit`, replaced whole (threads never read one call's shape with another's states);
        setting it makes the hot path for it (one closure, replaced whole too)."""
        return self._memo

    @memo.setter
    def memo(self, value: tuple) -> None:
        module = self.ref()
        now = self.getkey(module.__dict__ if self.from_dict else module) if module is not None else None
        if value == self._memo and self.hot is not no_memo and same_objects(now, self._made):
            return  # the hot path in place was made for this memo and these very settings
        self._memo, self._made = value, now
        self.flat = flat = flat_memo(self, value, now)
        self.hot = hot_path(self, flat)


# id(module) -> CallPlan; the plan's weakref drops the entry when the module dies (cheaper than a
# WeakKeyDictionary lookup, which builds a weakref on every call)
_plans: dict[int, CallPlan] = {}


def _forget(mid: int, ref: weakref.ref) -> None:
    """Drop a dead module's plan: one dict lookup (teardown of N modules is O(N), not O(N²))."""
    p = _plans.get(mid)
    if p is not None and p.ref is ref:
        del _plans[mid]


def plan_for(module: torch.nn.Module) -> CallPlan:
    """The cached :class:`CallPlan` of ``module`` (rebuilt, memo and all, if its configuration changed)."""
    p = _plans.get(id(module))
    if p is None or p.ref() is not module or p.getkey(module.__dict__ if p.from_dict else module) != p.key:
        p = CallPlan(module, conventions(module))
        _plans[id(module)] = p
    return p


def weight(module: torch.nn.Module, p: CallPlan) -> Tensor:
    """The first input weight: its dtype and device are the module's (works under functional_call)."""
    w = module._parameters.get(p.wname)
    return w if w is not None else getattr(module, p.wname)


def fit(p: CallPlan, sh: tuple[int, ...], decl: dict[str, int] | None) -> tuple[tuple[int, ...], ...] | None:
    """The shapes ``(h, c)`` a state must have for an input of shape ``sh``, or None when ``sh`` does not fit:
    :func:`shapeviz.core.callfit.expected`, the one rule (a one-tensor state's pair is ``(h, h)``).

    >>> import torch.nn as nn
    >>> from shapeviz.core.model import conventions
    >>> lstm = nn.LSTM(10, 20, 2)
    >>> fit(CallPlan(lstm, conventions(lstm)), (5, 3, 10), None)  # (T=5, bs=3, emb=10)
    ((2, 3, 20), (2, 3, 20))
    """
    wants = expected(p.rule, sh, decl)
    return None if wants is None else (wants[0], wants[-1])


def fast_ok(module: torch.nn.Module, p: CallPlan, x: Any, hx: Any, decl: dict[str, int] | None) -> bool:
    """True when the call fits (:mod:`shapeviz.core.callfit`); False hands over to
    :func:`shapeviz.runtime.diagnosis.diagnose`. A tensor input's state shapes are left as the plan's memo,
    which :func:`check_input` compares a repeat call with first (the plan's hot path).

    >>> import torch, torch.nn as nn
    >>> gru = nn.GRU(4, 6)
    >>> fast_ok(gru, plan_for(gru), torch.randn(5, 2, 4), torch.zeros(1, 2, 6), None)
    True
    """
    if not isinstance(x, Tensor):
        if isinstance(x, PackedSequence):
            wants = packed_states(p.rule, x.data, x.batch_sizes, decl)
            data = x.data
            return wants is not None and agrees(data, *_weight_of(module, p)) and states_fit(
                p.rule, hx, wants, data.dtype, data.device)
        return False  # non-tensors take the slow path
    if x.is_nested:
        return False  # no shape to read: the slow path says what it is
    sh = x.shape
    wants = expected(p.rule, sh, decl)
    if wants is None:
        return False
    p.memo = (sh, decl, wants[0], wants[-1])  # one tuple, replaced whole (threads); check_input compares with it
    return agrees(x, *_weight_of(module, p)) and states_fit(p.rule, hx, wants, x.dtype, x.device)


def _weight_of(module: torch.nn.Module, p: CallPlan) -> tuple[torch.dtype, torch.device]:
    w = weight(module, p)
    return w.dtype, w.device


class _Missing:
    """The default of :func:`check_call`'s input: told apart from an input of None."""

    def __repr__(self) -> str:
        return "<no input>"


_MISSING: Any = _Missing()


def check_call(module: torch.nn.Module, x: Any = _MISSING, hx: Any = None, /, *args: Any, **kwargs: Any) -> None:
    """Check a call ``module(*args, **kwargs)`` against the module's conventions: ``check_call(rnn, x, h0)``
    checks ``rnn(x, h0)`` (arguments by place or by torch's names ``input=`` and ``hx=``).

    Raises :class:`~shapeviz.ShapeError` with a stable code and a hint; returns None when fine.

    >>> import torch, torch.nn as nn
    >>> check_call(nn.LSTMCell(8, 16), torch.randn(4, 8))  # (bs=4, emb=8) -> fine
    """
    if not kwargs and not args and x is not _MISSING:  # (input, hx) or (input,): the plan's hot path at once
        p = _plans.get(id(module))
        if p is None or not p.hot(module, x, hx):
            if x is None:  # check_call(rnn, None): a call torch refuses (a watched forward leaves it to torch)
                _refuse_none(module, hx)
            check_input(module, x, hx, None)
        return
    given = () if x is _MISSING else (x,) if hx is None and not args else (x, hx, *args)
    if isinstance(module, RECURRENT_TYPES):  # torch's forward(input, hx=None): what else it refuses, said so here
        _takes(module, given, kwargs)
        if (given[0] if given else kwargs.get("input")) is None:
            _refuse_none(module, given[1] if len(given) > 1 else kwargs.get("hx"))
    check_module_call(module, given, kwargs, None)


def _refuse_none(module: torch.nn.Module, hx: Any) -> None:
    """``check_call(rnn, None)``: an ``input_ndim`` ShapeError (torch's forward fails on ``None.dim()``).

    >>> import torch.nn as nn
    >>> try:
    ...     _refuse_none(nn.GRU(4, 6), None)
    ... except Exception as e:
    ...     print(str(e).splitlines()[1].strip())
    expected a Tensor or PackedSequence, got None (no input)
    """
    if isinstance(module, RECURRENT_TYPES):
        from shapeviz.runtime.diagnosis import diagnose

        err = diagnose(module, plan_for(module).conv, None, hx, DECLARED.get(), None)
        if err is not None:
            raise err


def _takes(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
    """``check_call``'s arguments are a call torch's ``forward(input, hx=None)`` takes, else a TypeError that says
    what it takes (a misspelt ``h0=`` was dropped, and the call read as one with no state).

    >>> import torch.nn as nn
    >>> try:
    ...     _takes(nn.GRU(4, 6), (), {"input": 1, "h0": 2})
    ... except TypeError as e:
    ...     print(str(e).split(";")[0])
    check_call(GRU, ...): unexpected argument 'h0'
    """
    bad = [k for k in kwargs if k not in ("input", "hx")]
    named = [k for k in ("input", "hx")[:len(args)] if k in kwargs]
    problem = (f"unexpected argument {bad[0]!r}" if bad else f"{len(args)} arguments by place, at most 2"
               if len(args) > 2 else f"{named[0]!r} given twice" if named
               else "no input" if not args and "input" not in kwargs else "")
    if problem:
        raise TypeError(f"check_call({type(module).__name__}, ...): {problem}; it checks module(input, hx): give them "
                        "by place, or as input= and hx=")


def checker(module: torch.nn.Module) -> Callable[..., None]:
    """``check = checker(module)``: :func:`check_call` for one module, at its least cost per call:
    ``check(x, hx)`` checks ``module(x, hx)``, raising :class:`~shapeviz.ShapeError` on a mistake. Build it
    once, outside the loop it checks; it keeps ``module`` alive and is not saved with it (a function: keep it
    on no module you save or copy, where ``check_call`` does the same job).

    >>> import torch, torch.nn as nn
    >>> check = checker(nn.LSTM(10, 20, 2))
    >>> check(torch.randn(5, 3, 10), (torch.zeros(2, 3, 20), torch.zeros(2, 3, 20)))  # (T=5, bs=3, emb=10)
    >>> check(torch.randn(5, 3, 10), (torch.zeros(2, 4, 20), torch.zeros(2, 4, 20)))
    Traceback (most recent call last):
    ...
    shapeviz.ShapeError: [batch_mismatch] LSTM(10, 20, num_layers=2): argument `h_0`
    ...

    A call that repeats the last one that fit (input shape, declared sizes, settings) is accepted after the
    reads of the plan's hot path, made in the check itself; any other is checked as ``check_call`` checks it.
    A layer declared with ``sv.recurrent`` takes its own arguments: its checker is ``check_call`` with the
    module bound.
    """
    if not isinstance(module, RECURRENT_TYPES) and declaration_of(type(module)) is not None:
        return functools.partial(check_call, module)
    check = checker_code(plan_for(module), module, _refresh)
    check.__name__ = check.__qualname__ = f"checker({type(module).__name__})"  # what a wrong call's TypeError names
    return check


def _refresh(module: torch.nn.Module, x: Any, hx: Any) -> tuple | None:
    """A checker's long way: check the call (raises on a mistake), then the memo to compare the next call with;
    None (keep the memo) where the fast path did not judge the call (compiling, the kill switch, packed)."""
    if not check_input(module, x, hx, None):
        return None
    p = _plans.get(id(module))
    return p.flat if p is not None else None


def check_module_call(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any], path: str | None) -> None:
    """:func:`check_call` with the module's path inside a model: the arguments read as torch reads them.

    >>> import torch, torch.nn as nn
    >>> check_module_call(nn.GRU(4, 6), (torch.randn(5, 2, 4),), {"hx": torch.zeros(1, 2, 6)}, "enc.rnn")
    """
    if not isinstance(module, RECURRENT_TYPES) and declaration_of(type(module)) is not None:  # sv.recurrent
        from shapeviz.runtime.declared import declared_args

        check_input(module, *declared_args(module, args, kwargs), path)
        return
    check_input(module, *call_args(args, kwargs), path)


def call_args(args: tuple, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """``(input, hx)`` of a recurrent call, read as torch's ``forward(input, hx=None)`` reads them.

    >>> call_args((1,), {"hx": 2}), call_args((), {"input": 1}), call_args((1, 2), {})
    ((1, 2), (1, None), (1, 2))
    """
    if args:
        return args[0], args[1] if len(args) > 1 else kwargs.get("hx")
    return kwargs.get("input"), kwargs.get("hx")


def check_traced(module: torch.nn.Module, x: Any, hx: Any, path: str | None) -> bool:
    """The check of ``module(x, hx)`` while dynamo traces it (:mod:`shapeviz.runtime.compiled`, the kill switch
    read there as a constant); False: the compiled call keeps torch's own check. A watched module's check comes
    here straight from its gate, reading no plan: a read of the plans would become a guard, and the compiled
    code would recompile once the module had been checked eagerly.

    >>> import torch, torch.nn as nn
    >>> check_traced(nn.GRU(4, 6), torch.randn(5, 2, 4), None, None)  # (T=5, bs=2, emb=4): fine
    False
    """
    from shapeviz.runtime.compiled import check_compiling

    check_compiling(module, (x, hx), {}, path)
    return False


def check_input(module: torch.nn.Module, x: Any, hx: Any, path: str | None) -> bool:
    """Check ``module(x, hx)`` (``hx`` None when not given): every eager check comes here. Returns True when
    shapeviz's fast path verified the call (a tensor input, its state and the weights' dtype and device: all
    torch's own ``check_forward_args`` would compare), False when it did not judge it (``SHAPEVIZ_DISABLE``,
    compiling, no input, a ``PackedSequence``, a call the diagnosis let pass); raises on a mistake.

    ``SHAPEVIZ_DISABLE`` is read and the configuration compared on every call. A tensor call whose input
    shape and declared sizes equal those of the last call that fit (the plan's memo of :func:`fit`) is then
    accepted after reading its dtypes, devices and state shapes in line: the same rule as :func:`fast_ok`,
    which judges every other call. Only a call that does not fit is diagnosed.

    >>> import torch, torch.nn as nn
    >>> check_input(nn.LSTM(4, 6), torch.randn(5, 2, 4), None, "enc.rnn")  # (T=5, bs=2, emb=4): fine
    True
    """
    p = _plans.get(id(module))
    if p is not None and p.hot(module, x, hx):  # a repeat of the last call that fit: plain reads, in line
        return True
    if p is None and not isinstance(module, RECURRENT_TYPES) and declaration_of(type(module)) is not None:
        from shapeviz.runtime.declared_check import check_declared  # a class declared with sv.recurrent

        check_declared(module, x, hx, path)
        return False
    if is_compiling():  # dynamo traces this call: checked at trace time (README: torch.compile)
        return check_traced(module, x, hx, path)
    if env_disabled():
        return False
    if p is None or p.ref() is not module or p.getkey(module.__dict__ if p.from_dict else module) != p.key:
        p = plan_for(module)
    if x is None:
        return False
    decl = DECLARED.get()
    if fast_ok(module, p, x, hx, decl):
        return type(x) is Tensor
    if decl is not None:  # a declaration left behind by an interrupted forward is dropped, never believed
        decl = live_declared()
    from shapeviz.runtime.diagnosis import diagnose

    err = diagnose(module, p.conv, x, hx, decl, path)
    if err is not None:
        raise err
    return False
