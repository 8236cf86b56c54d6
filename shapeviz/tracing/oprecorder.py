"""Op recording: the torch-function mode of a trace, and the record of each torch operation your code runs.

>>> import torch, torch.nn as nn
>>> from shapeviz.tracing.session import trace
>>> def step(x, W):
...     return torch.tanh(x @ W)
>>> t = trace(step, torch.zeros(2, 4), torch.zeros(4, 8), ops=True)
>>> [(c.type, c.describe()) for c in t.calls[1:]]
[('matmul', 'x (2, 4) @ W (4, 8) → (2, 8)'), ('tanh', 'tanh((2, 8)) → (2, 8)')]

:class:`OpMode` sees every torch function while the forward runs. With ``ops=True`` it records the ops of your
code (not those torch runs for you) through :class:`OpRecorder`: the op's name, your line, its non-tensor
arguments, each operand's record (with the variable it was read from) and its results', named by the op's rule
(:mod:`shapeviz.tracing.oprules`) when the forward is done. Whatever ``ops`` says it keeps the data flow going
through every op (:mod:`shapeviz.tracing.provenance`), notes steps of a dim (:mod:`shapeviz.tracing.steps`),
records the op that raised, and shapes the recurrent kernels on ``meta`` (:func:`~shapeviz.tracing.meta.
rnn_kernel_on_meta`).
"""

from __future__ import annotations

import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch
from torch.overrides import TorchFunctionMode

from shapeviz.tracing.meta import RNN_KERNELS, rnn_kernel_on_meta
from shapeviz.tracing.modulecalls import ModuleCalls
from shapeviz.tracing.naming import BY_SIZE, How, Naming, declared_names
from shapeviz.tracing.oprules import has_tensor, op_name, op_params, op_rule
from shapeviz.tracing.records import Call, CallKind, TensorInfo
from shapeviz.tracing.sites import _SITES, FrameLabels, attr_label, call_as_caller, site_of, user_frame
from shapeviz.tracing.steps import STEP_FUNCS
from shapeviz.tracing.tensorbook import _DEVICES, _DTYPES, PLAIN, TensorBook, device_name, dtype_name

if TYPE_CHECKING:
    from shapeviz.tracing.recorder import Tracer

__all__ = ["OpMode", "OpRecorder"]

_KEYS = tuple(str(i) for i in range(16))
_CONTAINERS = (torch.Tensor, tuple, list, dict)  # what may hold tensors (a PackedSequence is a tuple)
_ORIGINS: dict[str, str] = {}  # op name -> "op matmul"
_NAMES: dict[Any, str | None] = {}  # func -> op_name(func)
_MISSING: Any = object()
_SETITEM = torch.Tensor.__setitem__
_OP = CallKind.OP
_RULE, _LIKE = Naming.RULE, Naming.LIKE
_new = tuple.__new__  # How(...) without its constructor's Python frame (as How's own constructors do)
_ref = weakref.ref
_RESHAPED_IN_PLACE = frozenset(f"{op}_" for op in (
    "unsqueeze", "squeeze", "t", "transpose", "swapdims", "swapaxes", "resize", "resize_as", "as_strided"))
"""In-place ops that change their tensor's shape: their record shows the tensor as it was given."""


class OpRecorder:
    """Makes the :class:`~shapeviz.tracing.records.Call` of each recorded op, in the trace's list of calls."""

    __slots__ = ("book", "calls", "failed", "modules", "owners")

    def __init__(self, calls: list[Call], book: TensorBook, modules: ModuleCalls) -> None:
        self.calls = calls
        self.book = book
        self.modules = modules
        self.failed: Call | None = None  # the latest op that raised (one your code caught is replaced)
        self.owners: dict[int, Any] = {}  # id(module) -> its tensor attributes, read once per trace (FrameLabels)

    def _call(self, name: str, args: tuple, kwargs: dict[str, Any], frame: FrameType | None) -> Call:
        """The record of op ``name`` and its operands (its results are added by the caller)."""
        open_ = self.modules.open
        parent = open_[-1][0] if open_ else None
        source, code = site_of(frame) if frame is not None else ("", "")
        call = Call(len(self.calls), parent.path if parent is not None else "", name, CallKind.OP, [], [], None,
                    len(open_), parent.index if parent is not None else None, source, code, op_params(args, kwargs))
        labels = FrameLabels(frame, self.owners) if frame is not None else None
        ins = call.inputs
        book = self.book
        for i, a in enumerate(args):
            if type(a) in PLAIN:
                ins.append(book.operand(a, _KEYS[i] if i < 16 else str(i), labels.name_of(a) if labels else ""))
            elif isinstance(a, _CONTAINERS):
                ins += book.infos(a, str(i), labels=labels, tuples=True)
        if kwargs:
            ins += book.infos(kwargs, "", labels=labels, tuples=True)
        return call

    def record(self, name: str, args: tuple, kwargs: dict[str, Any], out: Any, frame: FrameType) -> None:
        """Record op ``name`` that your code ran at ``frame`` and that returned ``out``.

        The hot path of a trace with ``ops=True``: plain tensors among the arguments and as the result are
        recorded in line here (what :meth:`TensorBook.operand` and :meth:`TensorBook.info` do for them);
        anything else goes through the book."""
        book = self.book
        open_ = self.modules.open
        index = len(self.calls)
        if open_:
            parent = open_[-1][0]
            path, parent_index = parent.path, parent.index
        else:
            path, parent_index = "", None
        site = _SITES.get((id(frame.f_code), frame.f_lasti)) or site_of(frame)
        params = ""
        if kwargs:
            params = op_params(args, kwargs)
        else:
            for a in args:
                if type(a) not in PLAIN:
                    params = op_params(args, kwargs)
                    break
        ins: list[TensorInfo] = []
        loc = frame.f_locals
        labels: FrameLabels | None = None
        seen, hows, out_of, flow, slices = book.seen, book.hows, book.out_of, book.flow, book.slices
        following = bool(flow.origins)
        for key, a in zip(_KEYS, args) if len(args) <= len(_KEYS) else ((str(i), a) for i, a in enumerate(args)):
            if type(a) in PLAIN:
                for var, v in loc.items():
                    if v is a:
                        label = var
                        break
                else:
                    label = attr_label(loc.get("self"), a, self.owners)
                if a.is_nested:
                    ins.append(book.info(a, None, key=key, label=label))
                    continue
                hit = seen.get(id(a))
                if hit is not None and hit[0]() is a:
                    prev = hit[1]
                    info = TensorInfo(tuple(a.shape), None, "", key, label, _DTYPES.get(a.dtype) or dtype_name(a),
                                      _DEVICES.get(a.device) or device_name(a), False, "", 1, out_of.get(id(prev)))
                    hows[id(info)] = (info, prev)  # named like the tensor's earlier record (see TensorBook.hows)
                elif declared_names(a):  # named with sv.name: the general path
                    ins.append(book.info(a, None, key=key, label=label))
                    continue
                else:
                    info = TensorInfo(tuple(a.shape), None, "", key, label, _DTYPES.get(a.dtype) or dtype_name(a),
                                      _DEVICES.get(a.device) or device_name(a))
                    hows[id(info)] = (info, BY_SIZE)
                    seen[id(a)] = (_ref(a), info)
                if following:
                    info.flow = flow.flow_of(a)
                    info.tokens = flow.tokens_of(a)
                if slices:
                    hit = slices.get(id(a))
                    if hit is not None and hit[0]() is a:
                        book.stepped.append((info, hit[1], hit[2]))
                ins.append(info)
            elif isinstance(a, _CONTAINERS):
                if labels is None:
                    labels = FrameLabels(frame, self.owners)
                ins += book.infos(a, key, labels=labels, tuples=True)
        if kwargs:
            if labels is None:
                labels = FrameLabels(frame, self.owners)
            ins += book.infos(kwargs, "", labels=labels, tuples=True)
        rule = op_rule(name, args, kwargs)
        origin = _ORIGINS.get(name)
        if origin is None:
            origin = _ORIGINS[name] = f"op {name}"
        how = _new(How, (_RULE, (), None, rule, ins, origin) if rule is not None else
                   (_LIKE, (), None, None, ins, origin))
        if type(out) in PLAIN and not out.is_nested:
            hit = seen.get(id(out))
            if hit is not None and hit[0]() is out:  # an in-place op: the tensor keeps its first record
                info = TensorInfo(tuple(out.shape), None, "", "", "", _DTYPES.get(out.dtype) or dtype_name(out),
                                  _DEVICES.get(out.device) or device_name(out), False, "", 1, out_of.get(id(hit[1])))
            else:
                info = TensorInfo(tuple(out.shape), None, "", "", "", _DTYPES.get(out.dtype) or dtype_name(out),
                                  _DEVICES.get(out.device) or device_name(out))
                seen[id(out)] = (_ref(out), info)
            hows[id(info)] = (info, how)
            if following:
                info.flow = flow.flow_of(out)
                info.tokens = flow.tokens_of(out)
            if slices:
                hit = slices.get(id(out))
                if hit is not None and hit[0]() is out:
                    book.stepped.append((info, hit[1], hit[2]))
            out_of[id(info)] = index
            outs = [info]
        else:
            outs = book.infos(out, "", how, tuples=True)
            if isinstance(out, (tuple, list)):  # unbind, split, chunk: every tensor of a run shares its record
                _share_runs(book, out, outs)
            for o in outs:
                out_of.setdefault(id(o), index)
        self.calls.append(Call(index, path, name, _OP, ins, outs, None, len(open_), parent_index, site[0], site[1],
                               params))

    def op_failed(self, func: Any, args: tuple, kwargs: dict[str, Any], exc: BaseException) -> None:
        """An op raised: its record (operands in named dims, your line) for the exception's note."""
        name = op_name(func) or str(getattr(func, "__name__", type(func).__name__))
        call = self._call(name, args, kwargs, user_frame())
        call.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.failed = call


def _share_runs(book: TensorBook, out: tuple | list, outs: list[TensorInfo]) -> None:
    runs = {o.shape: o for o in outs if o.repeat > 1}
    if not runs:
        return
    for t in out:
        if isinstance(t, torch.Tensor) and book.known(t) is None and tuple(t.shape) in runs:
            book.remember(t, runs[tuple(t.shape)])


class OpMode(TorchFunctionMode):
    """Records torch ops run by your code (``ops=True``) and the op that raised (always)."""

    def __init__(self, tracer: Tracer) -> None:
        super().__init__()
        self.tracer = tracer
        self.recorder: OpRecorder = tracer.op_recorder
        self.book: TensorBook = tracer.book
        self.flow = tracer.flow
        self.open = tracer.modules.open  # the open module calls (one list for the whole trace)
        self.ops = tracer.ops
        self.busy = False  # shapeviz's own torch calls while it records pass straight through
        tracer.mode = self

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if kwargs is None:
            kwargs = {}
        open_ = self.open
        if func in RNN_KERNELS and open_ and open_[-1][0].conventions is not None:
            res = rnn_kernel_on_meta(open_[-1][0].conventions, args)
            if res is not None:
                return res
        if self.busy or not self.ops or not (not open_ or open_[-1][2]):
            try:
                res = call_as_caller(func, args, kwargs)
            except Exception as exc:
                self._failed(func, args, kwargs, exc)
                raise
            if not self.busy and (not open_ or open_[-1][2]):  # your code
                if func in STEP_FUNCS:
                    self.book.note_step(func, args, kwargs, res)
                if self.flow.origins:
                    self._carry(func, args, kwargs, res)
            return res
        name = _NAMES.get(func, _MISSING)
        if name is _MISSING:
            name = op_name(func)
            if len(_NAMES) < 4096:
                _NAMES[func] = name
        before = args[0] if name in _RESHAPED_IN_PLACE and args and type(args[0]) in PLAIN else None
        if before is not None:
            before = (before, tuple(before.shape), before.stride(), before.storage_offset())
        try:
            out = call_as_caller(func, args, kwargs)
        except Exception as exc:
            self._failed(func, args, kwargs, exc)
            raise
        if before is not None and out is before[0] and tuple(out.shape) != before[1]:
            args = (self._as_it_was(*before), *args[1:])
        frame = user_frame(direct=True) if name is not None and (type(out) in PLAIN or has_tensor(out)) else None
        if frame is not None:
            self.busy = True
            try:
                self.recorder.record(name, args, kwargs, out, frame)
                if self.flow.origins:
                    self.flow.carry((args, kwargs), out)
            finally:
                self.busy = False
        elif self.flow.origins:  # not recorded (x.data, x[t] = y): the data flow still goes through it
            self._carry(func, args, kwargs, out)
        if func in STEP_FUNCS:
            self.book.note_step(func, args, kwargs, out)
        return out

    def _as_it_was(self, t: torch.Tensor, shape: tuple[int, ...], stride: tuple[int, ...], offset: int) -> Any:
        """What ``x.unsqueeze_(0)`` was given, for its record: a view of x's data in its shape before the op,
        named as x was (``(bs, f)``, not the ``(1, bs, f)`` x is once the op has run)."""
        self.busy = True
        try:
            with torch.no_grad():
                old = t.as_strided(shape, stride, offset)
        finally:
            self.busy = False
        seen = self.book.seen
        hit = seen.get(id(t))
        if hit is not None and hit[0]() is t:
            seen[id(old)] = (_ref(old), hit[1])
        return old

    def _failed(self, func: Any, args: tuple, kwargs: dict[str, Any], exc: BaseException) -> None:
        if self.busy:
            return
        self.busy = True
        try:
            self.recorder.op_failed(func, args, kwargs, exc)
        finally:
            self.busy = False

    def _carry(self, func: Any, args: tuple, kwargs: dict[str, Any], out: Any) -> None:
        self.busy = True
        try:
            self.flow.carry((args, kwargs), args[0] if func is _SETITEM else out)
        finally:
            self.busy = False
