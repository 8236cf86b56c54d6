"""The recorder: module hooks and a torch-function mode that turn one forward pass into records.

>>> import torch, torch.nn as nn
>>> tracer = Tracer(ops=False, declared_sizes={})
>>> rnn = nn.GRU(4, 8)
>>> tracer.enter("", rnn, (torch.zeros(5, 2, 4),), {}, user=False)
>>> tracer.exit(rnn, rnn(torch.zeros(5, 2, 4)))
>>> sizes = tracer.resolve()
>>> [(i.role, i.names) for i in tracer.calls[0].outputs]
[('output', ('T', 'bs', 'D*h')), ('h_n', ('layers*D', 'bs', 'h'))]

:func:`shapeviz.tracing.session.trace` installs the hooks and the :class:`OpMode` around a call
and removes them on every path; the :class:`Tracer` holds tensors only through weak references
and keeps shapes, dtypes, devices and names (:mod:`shapeviz.tracing.records`).
"""

from __future__ import annotations

import contextlib
import inspect
import linecache
import os
import sys
import weakref
from collections.abc import Sequence
from types import FrameType
from typing import Any

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence
from torch.overrides import TorchFunctionMode

from shapeviz.core.dimensions import is_simple_name
from shapeviz.core.frames import is_library, is_torch, torch_dir
from shapeviz.core.model import Conventions, conventions, is_recurrent
from shapeviz.tracing.naming import (
    BY_SIZE,
    How,
    Namer,
    Naming,
    Resolver,
    declared_names,
    flag_scramble,
    module_how,
)
from shapeviz.tracing.oprules import flatten, has_tensor, op_name, op_params, op_rule
from shapeviz.tracing.records import Call, CallKind, TensorInfo

__all__ = ["OpMode", "Tracer", "type_name", "user_frame"]


_DTYPE_NAMES: dict[torch.dtype, str] = {}


def _dtype(t: torch.Tensor) -> str:
    """``"float32"`` (cached per dtype: a hot helper)."""
    d = t.dtype
    name = _DTYPE_NAMES.get(d)
    if name is None:
        name = _DTYPE_NAMES[d] = str(d).replace("torch.", "")
    return name


def _device(t: torch.Tensor) -> str:
    d = t.device
    return d.type if d.index is None or d.type == "cpu" else f"{d.type}:{d.index}"


Flow = tuple[tuple[int, int], ...]
"""(call index, output position) of the recurrent calls a tensor was computed from, latest first."""
_MAX_FLOW = 4


def merge_flows(flows: Sequence[Flow]) -> Flow:
    """One flow from several (an op's operands): latest call first, at most four entries.

    >>> merge_flows([((0, 1),), ((3, 0), (0, 1))])
    ((3, 0), (0, 1))
    """
    return tuple(sorted({f for flow in flows for f in flow}, reverse=True)[:_MAX_FLOW])


class Tracer:
    """Collects Calls during one forward; holds tensors only through weak references."""

    def __init__(self, ops: bool, declared_sizes: dict[str, int], by_dims: dict[str, int] | None = None) -> None:
        self.ops = ops
        self.calls: list[Call] = []
        self.stack: list[tuple[Call, int, bool]] = []  # open module calls: (call, id(module), user code?)
        self.pending: list[TensorInfo] = []  # in the order they were seen
        self.hows: dict[int, tuple[TensorInfo, How]] = {}
        self.out_of: dict[int, int] = {}  # id(output info) -> index of its call
        self.seen: dict[int, tuple[weakref.ref, TensorInfo]] = {}
        self.declared = dict(declared_sizes)
        self.by_dims = dict(by_dims or {})  # the sizes sv.dims declared: a unique one names dims by size
        self.learned: dict[str, set[int]] = {}
        self.failed: Call | None = None
        self.busy = False
        # data flow: id(tensor) -> (weak ref, the recurrent (call, output) pairs it was computed from)
        self.origins: dict[int, tuple[weakref.ref, Flow]] = {}
        self.in_flow: dict[int, Flow] = {}  # index of an open non-recurrent call -> its inputs' flow

    # ------------------------------------------------------------ tensors -> infos
    def _known(self, t: torch.Tensor) -> TensorInfo | None:
        hit = self.seen.get(id(t))
        if hit is not None and hit[0]() is t:
            return hit[1]
        return None

    def _remember(self, t: torch.Tensor, info: TensorInfo) -> None:
        with contextlib.suppress(TypeError):  # not weak-referenceable: just not remembered
            self.seen[id(t)] = (weakref.ref(t), info)

    def info(self, t: torch.Tensor, how: How | None, *, key: str = "", role: str = "", label: str = "",
             packed: str = "", repeat: int = 1, keep_known: bool = False) -> TensorInfo:
        """The record of ``t``, named by ``how`` once the forward is done; with no ``how`` (or with
        ``keep_known`` for a tensor recorded before) it takes the earlier record's names, else its sizes'."""
        info = TensorInfo(shape=tuple(int(s) for s in t.shape), role=role, key=key, label=label,
                          dtype=_dtype(t), device=_device(t), packed=packed, repeat=repeat)
        if self.origins:
            info.flow = self.flow_of(t)
        if packed == "batch_sizes" and t.device.type == "cpu" and t.dim() == 1:
            info.batch_sizes = _runs(t.tolist())
        prev = self._known(t)
        if prev is not None:
            info.produced_by = self.out_of.get(id(prev))
            if keep_known:
                how = None
        if how is None:
            given = declared_names(t) if prev is None else None
            how = How.alias(prev) if prev is not None else How.exact(given, "sv.name") if given else BY_SIZE
        self.pending.append(info)
        self.hows[id(info)] = (info, how)
        exact = how.kind is Naming.EXACT
        if exact and prev is not None and id(prev) in self.hows and self.hows[id(prev)][1].kind is not Naming.EXACT:
            self.hows[id(prev)] = (prev, How.alias(info))  # a module's conventions name it better
        if exact or prev is None:
            self._remember(t, info)
        return info

    def infos(self, obj: Any, key: str, how: How | None = None, *, keep_known: bool = False,
              labels: dict[int, str] | None = None, tuples: bool = False,
              arg_names: Sequence[str] = ()) -> list[TensorInfo]:
        """Records of every tensor in ``obj`` (see :func:`~shapeviz.tracing.oprules.flatten`), all named by ``how``."""
        out = []
        for k, t, packed in flatten(obj, key, tuples=tuples):
            repeat = 1
            if isinstance(t, tuple):
                t, repeat = t
            label = labels.get(id(t), "") if labels else ""
            if arg_names and not label:
                label = _arg_label(k, arg_names)
            out.append(self.info(t, how, key=k, label=label, packed=packed, repeat=repeat, keep_known=keep_known))
        return out

    # ------------------------------------------------------------ data flow
    def flow_of(self, t: Any) -> Flow:
        hit = self.origins.get(id(t))
        return hit[1] if hit is not None and hit[0]() is t else ()

    def mark(self, t: Any, flow: Flow, *, keep: bool = True) -> None:
        """Record that ``t`` was computed from ``flow`` (``keep``: a tensor marked before stays)."""
        if not flow or (keep and self.flow_of(t)):
            return
        with contextlib.suppress(TypeError):
            self.origins[id(t)] = (weakref.ref(t), flow)

    def carry(self, args: Any, out: Any) -> None:
        """An op's results are computed from its operands: they inherit the operands' flow."""
        flow = merge_flows([self.flow_of(t) for _, t, _ in flatten(args, "")])
        if flow:
            for _, t, _ in flatten(out, "", tuples=False):
                self.mark(t if not isinstance(t, tuple) else t[0], flow)

    # ------------------------------------------------------------ module calls
    def enter(self, path: str, module: Any, args: tuple, kwargs: dict[str, Any], user: bool) -> None:
        with _off():
            self._enter(path, module, args, kwargs, user)

    def exit(self, module: Any, output: Any) -> None:
        with _off():
            self._exit(module, output)

    def _enter(self, path: str, module: Any, args: tuple, kwargs: dict[str, Any], user: bool) -> None:
        self.busy = True
        try:
            parent = self.stack[-1][0] if self.stack else None
            conv = conventions(module) if is_recurrent(module) else None
            call = Call(index=len(self.calls), path=path, type=type_name(module), kind=CallKind.MODULE,
                        conventions=conv, depth=len(self.stack),
                        parent=parent.index if parent is not None else None)
            self.calls.append(call)
            self.stack.append((call, id(module), user))
            site = user_frame()
            if site is not None:
                call.site = f"{os.path.basename(site.f_code.co_filename)}:{site.f_lineno}"
                call.code = linecache.getline(site.f_code.co_filename, site.f_lineno).strip()
            if conv is not None:
                call.inputs = self._recurrent(conv, args, kwargs, inputs=True, origin=f"conventions of {call.name}")
            else:
                call.inputs = self.infos(args, "", arg_names=_forward_params(module))
                if kwargs:
                    call.inputs += self.infos(kwargs, "", arg_names=("*",))
                if self.origins:
                    self.in_flow[call.index] = merge_flows([i.flow for i in call.inputs])
        finally:
            self.busy = False

    def _exit(self, module: Any, output: Any) -> None:
        self.busy = True
        try:
            while self.stack and self.stack[-1][1] != id(module):
                self.stack.pop()  # a call that raised inside a try/except of the user's
            if not self.stack:
                return
            call, _, _ = self.stack.pop()
            if call.conventions is not None:
                tensors: list[Any] = []
                call.outputs = self._recurrent(call.conventions, output, {}, inputs=False, tensors=tensors,
                                               origin=f"conventions of {call.name}")
                for pos, t in enumerate(tensors):  # a recurrent call's results start a new flow
                    self.mark(t, ((call.index, pos),), keep=False)
            else:
                call.outputs = self.infos(output, "", module_how(call.type, list(call.inputs), f"module {call.name}"),
                                          keep_known=True)
                flow = self.in_flow.pop(call.index, ())
                if flow:
                    self.carry_to(output, flow)
            for o in call.outputs:
                self.out_of.setdefault(id(o), call.index)
        finally:
            self.busy = False

    def carry_to(self, out: Any, flow: Flow) -> None:
        for _, t, _ in flatten(out, ""):
            self.mark(t if not isinstance(t, tuple) else t[0], flow)

    def _recurrent(self, conv: Conventions, obj: Any, kwargs: dict[str, Any], inputs: bool,
                   tensors: list[Any] | None = None, origin: str = "conventions") -> list[TensorInfo]:
        """Infos of a recurrent module's arguments or results, named from its Conventions."""
        if inputs:
            first = obj[0] if obj else kwargs.get("input")
            state = obj[1] if len(obj) > 1 else kwargs.get("hx")
            top: list[tuple[str, Any, tuple[str, ...]]] = [("0", first, ("input",)),
                                                           ("1" if len(obj) > 1 else "hx", state, conv.state_names)]
        else:
            if conv.cell:
                top = [("", obj, tuple(r for r in conv.result_names))]
                first = None
            else:
                out = obj if isinstance(obj, tuple) and not isinstance(obj, PackedSequence) else (obj,)
                first = out[0] if out else None
                states = out[1] if len(out) > 1 else None
                top = [("0", first, ("output",)), ("1", states, conv.result_names[1:])]
        layout = conv.layout
        packed = isinstance(first, PackedSequence)
        batched: bool | None = None  # a cell's results: decided from each state's ndim below
        if inputs or not conv.cell:
            batched = packed or (isinstance(first, torch.Tensor) and layout.is_batched(first.dim()) is True)
        infos: list[TensorInfo] = []
        dims_cache: dict[bool, dict[str, tuple[str, ...]]] = {}
        for key, value, roles in top:
            if value is None:
                continue
            items = list(flatten(value, key))
            for n, (k, t, part) in enumerate(items):
                if isinstance(t, tuple):
                    t = t[0]
                role = roles[min(n, len(roles) - 1)] if part == "" else roles[0]
                b = batched if batched is not None else t.dim() == layout.state_batched_ndim
                dims = dims_cache.get(b)
                if dims is None:
                    dims = dims_cache[b] = conv.dims(batched=b, packed=packed)
                names: tuple[str, ...] | None
                if part == "batch_sizes":
                    names = ("T",)
                else:
                    names = dims.get(role)
                    if names is not None and len(names) != t.dim():
                        names = None
                info = self.info(t, How.exact(names, origin) if names else None, key=k, role=role, packed=part)
                infos.append(info)
                if tensors is not None:
                    tensors.append(t)
                if names:
                    self._learn(names, info.shape, conv)
        for name, size in conv.sizes.items():
            if name in ("emb", "h", "proj"):
                self._learn1(name, size)
        return infos

    def _learn(self, names: Sequence[str], shape: Sequence[int], conv: Conventions) -> None:
        local = dict(conv.sizes)
        for n, s in zip(names, shape):
            if is_simple_name(n):
                local[n] = s
                self._learn1(n, s)
        for n, s in zip(names, shape):
            if n.startswith("sum("):
                self._learn1(n, s)
            elif "*" in n:
                factors = [local.get(f) for f in n.split("*")]
                if all(f is not None and f > 1 for f in factors):
                    self._learn1(n, s)

    def _learn1(self, name: str, size: int) -> None:
        if name not in self.declared:
            self.learned.setdefault(name, set()).add(int(size))

    # ------------------------------------------------------------ ops
    def user_code(self) -> bool:
        return not self.stack or self.stack[-1][2]

    def record_op(self, name: str, func: Any, args: tuple, kwargs: dict[str, Any], out: Any,
                  frame: FrameType | None) -> None:
        self.busy = True
        try:
            call = self._op_call(name, args, kwargs, frame)
            rule = op_rule(name, args, kwargs)
            ins = list(call.inputs)
            how = How.by_rule(rule, ins, f"op {name}") if rule is not None else How.like(ins, f"op {name}")
            call.outputs = self.infos(out, "", how, tuples=True)
            if isinstance(out, (tuple, list)):  # unbind, split, chunk: every tensor of a run shares its record
                runs = {o.shape: o for o in call.outputs if o.repeat > 1}
                for t in out if runs else ():
                    if isinstance(t, torch.Tensor) and self._known(t) is None and tuple(t.shape) in runs:
                        self._remember(t, runs[tuple(t.shape)])
            for o in call.outputs:
                self.out_of.setdefault(id(o), call.index)
            self.calls.append(call)
            if self.origins:
                self.carry_to(out, merge_flows([i.flow for i in call.inputs]))
        finally:
            self.busy = False

    def _op_call(self, name: str, args: tuple, kwargs: dict[str, Any], frame: FrameType | None) -> Call:
        parent = self.stack[-1][0] if self.stack else None
        labels = _labels(frame)
        call = Call(index=len(self.calls), path=parent.path if parent is not None else "", type=name,
                    kind=CallKind.OP, depth=len(self.stack), parent=parent.index if parent is not None else None,
                    params=op_params(args, kwargs))
        if frame is not None:
            call.source = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
            call.code = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
        for i, a in enumerate(args):
            call.inputs += self.infos(a, str(i), labels=labels, tuples=True)
        if kwargs:
            call.inputs += self.infos(kwargs, "", labels=labels, tuples=True)
        return call

    def op_failed(self, func: Any, args: tuple, kwargs: dict[str, Any], exc: BaseException) -> None:
        if self.busy:
            return
        self.busy = True
        try:
            name = op_name(func) or str(getattr(func, "__name__", type(func).__name__))
            call = self._op_call(name, args, kwargs, user_frame())
            call.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self.failed = call  # the latest: an op whose error your code caught is replaced
        finally:
            self.busy = False

    # ------------------------------------------------------------ meta-device recurrent kernels
    def meta_result(self, func: Any, args: tuple) -> tuple[torch.Tensor, ...] | None:
        """Result tensors of a recurrent kernel on the ``meta`` device, shaped by the Conventions.

        PyTorch runs meta recurrent kernels step by step (minutes for long sequences); the shapes
        are known without running them. The module's own argument checks have already run."""
        if not self.stack or self.stack[-1][0].conventions is None:
            return None
        conv = self.stack[-1][0].conventions
        if conv is None or conv.cell or not args or not isinstance(args[0], torch.Tensor):
            return None
        x = args[0]
        if x.device.type != "meta":
            return None
        if isinstance(args[1], torch.Tensor) and args[1].dim() == 1:  # packed: (data, batch_sizes, hx, …)
            bsz = args[1]
            if bsz.device.type == "meta":
                return None
            counts = bsz.tolist()
            lengths = [sum(1 for c in counts if c > i) for i in range(counts[0] if counts else 0)]
            shapes = conv.shapes(lengths=lengths)
        else:
            seq = conv.layout.seq_sizes(tuple(x.shape))
            if seq is None or not seq[2]:  # unbatched: run the kernel
                return None
            shapes = conv.shapes(T=int(seq[0] or 0), bs=int(seq[1] or 0))
        results = ("output",) + conv.result_names[1:]
        return tuple(torch.empty(shapes[r], dtype=x.dtype, device="meta") for r in results)  # type: ignore[misc, arg-type]

    # ------------------------------------------------------------ the end
    def resolve(self) -> dict[str, list[int]]:
        namer = Namer(self.declared, self.learned, self.by_dims)
        r = Resolver(namer, self.hows)
        for info in self.pending:
            r.resolve(info)
        for call in self.calls:  # a view/reshape that cut across named dims: the event is kept
            flag_scramble(call, namer)
        self.pending.clear()
        self.hows.clear()
        sizes = {n: [s] for n, s in self.declared.items()}
        for n, ss in self.learned.items():
            sizes.setdefault(n, sorted(ss))
        return sizes

    def close(self) -> None:
        self.seen.clear()
        self.origins.clear()
        self.in_flow.clear()
        self.out_of.clear()
        self.stack.clear()


_PARAMS: dict[Any, tuple[str, ...]] = {}


def _runs(values: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Run-length code: ``[3, 3, 2, 1, 1]`` -> ``((3, 2), (2, 1), (1, 2))``.

    >>> _runs([3, 3, 2, 1, 1])
    ((3, 2), (2, 1), (1, 2))
    """
    out: list[list[int]] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([int(v), 1])
    return tuple((a, b) for a, b in out)


def _forward_params(obj: Any) -> tuple[str, ...]:
    """The names of a module's ``forward`` (or a callable's) positional parameters; cached per class."""
    key = type(obj) if isinstance(obj, nn.Module) else None
    hit = _PARAMS.get(key) if key is not None else None
    if hit is None:
        fn = obj.forward if isinstance(obj, nn.Module) else obj
        try:
            params = inspect.signature(fn).parameters.values()
            hit = tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                                 p.VAR_POSITIONAL))
        except (TypeError, ValueError):
            hit = ()
        if key is not None:
            _PARAMS[key] = hit
    return hit


def _arg_label(key: str, arg_names: Sequence[str]) -> str:
    """``"1.0"`` with parameters ``("x", "state")`` -> ``"state[0]"``; kwargs keep their key."""
    head, _, rest = key.partition(".")
    if arg_names == ("*",):
        name = head
    elif head.isdigit() and int(head) < len(arg_names):
        name = arg_names[int(head)]
    elif ":" in head or not arg_names:
        return ""
    else:
        name = arg_names[-1]  # *args
    rest = "".join(f"[{p}]" for p in rest.split(".") if p and p not in ("data", "batch_sizes"))
    return name + rest


def type_name(obj: Any) -> str:
    """The class name of a module or object, the ``__name__`` of a function."""
    if isinstance(obj, type):
        return obj.__name__
    if callable(obj) and hasattr(obj, "__name__") and not isinstance(obj, nn.Module):
        return str(obj.__name__)
    return type(obj).__name__


_WRAPPERS = tuple(os.path.join(torch_dir(), *f.split("/")) for f in (
    "overrides.py", "_tensor.py", "functional.py", "nn/functional.py", "utils/_device.py",
    "_jit_internal.py", "utils/_contextlib.py", "autograd/grad_mode.py", "_compile.py"))


def user_frame(direct: bool = False) -> FrameType | None:
    """The innermost frame outside torch and shapeviz: the line of your code that ran the op.

    ``direct=True``: None when a torch function (not just a dispatch wrapper such as
    ``Tensor.__matmul__`` or ``F.embedding``) stands between your code and the op: an op that
    ``pack_padded_sequence`` runs for you is not one of yours."""
    f: FrameType | None = sys._getframe(2)
    while f is not None:
        fn = f.f_code.co_filename
        if not is_library(fn):
            return f
        if direct and is_torch(fn) and not fn.startswith(_WRAPPERS):
            return None
        f = f.f_back
    return None


def _labels(frame: FrameType | None) -> dict[int, str]:
    """Variable names of the tensors a frame can see: its locals and ``self``'s tensors."""
    if frame is None:
        return {}
    out: dict[int, str] = {}
    loc = frame.f_locals
    for name, v in loc.items():
        if isinstance(v, torch.Tensor) and id(v) not in out:
            out[id(v)] = name
    me = loc.get("self")
    if me is not None:
        attrs = list(getattr(me, "__dict__", {}).items())
        if isinstance(me, nn.Module):
            attrs += list(me._parameters.items()) + list(me._buffers.items())
        for name, v in attrs:
            if isinstance(v, torch.Tensor) and id(v) not in out:
                out[id(v)] = f"self.{name}"
    return out


def _off() -> Any:
    """No torch-function handling (our own mode included) while a hook reads shapes."""
    return torch._C.DisableTorchFunction()


_RNN_KERNELS = frozenset({torch._VF.lstm, torch._VF.gru, torch._VF.rnn_tanh, torch._VF.rnn_relu})  # type: ignore[attr-defined]


class OpMode(TorchFunctionMode):
    """Records torch ops run by your code (``ops=True``) and the op that raised (always)."""

    def __init__(self, tracer: Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        tr = self.tracer
        if func in _RNN_KERNELS:
            res = tr.meta_result(func, args)
            if res is not None:
                return res
        if tr.busy or not tr.ops or not tr.user_code():
            try:
                res = func(*args, **kwargs)
            except Exception as exc:
                tr.op_failed(func, args, kwargs, exc)
                raise
            if tr.origins and not tr.busy and tr.user_code():
                tr.busy = True
                try:
                    tr.carry((args, kwargs), res)
                finally:
                    tr.busy = False
            return res
        name = op_name(func)
        try:
            out = func(*args, **kwargs)
        except Exception as exc:
            tr.op_failed(func, args, kwargs, exc)
            raise
        if name is not None and has_tensor(out):
            frame = user_frame(direct=True)
            if frame is not None:
                tr.record_op(name, func, args, kwargs, out, frame)
        return out
