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

import functools
import sys
import threading
import weakref
from collections.abc import Sequence
from types import FrameType
from typing import Any

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence
from torch.overrides import TorchFunctionMode

from shapeviz.core.model import Conventions, conventions, is_recurrent
from shapeviz.tracing.learning import learned_sizes
from shapeviz.tracing.modestack import pop_mode, push_mode, quiet_hooks_supported
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
from shapeviz.tracing.oprules import RESHAPES, flatten, has_tensor, op_name, op_params, op_rule
from shapeviz.tracing.provenance import Provenance
from shapeviz.tracing.records import Call, CallKind, TensorInfo
from shapeviz.tracing.sites import FrameLabels, arg_label, forward_params, site_of, type_name, user_frame
from shapeviz.tracing.steps import STEP_FUNCS, step_dim

__all__ = ["OpMode", "Tracer", "quiet_hooks_supported"]


_DTYPE_NAMES: dict[torch.dtype, str] = {}


def _dtype(t: torch.Tensor) -> str:
    """``"float32"`` (cached per dtype: a hot helper)."""
    d = t.dtype
    name = _DTYPE_NAMES.get(d)
    if name is None:
        name = _DTYPE_NAMES[d] = str(d).replace("torch.", "")
    return name


_PLAIN = frozenset({torch.Tensor, nn.Parameter})
"""Tensor types recorded as they are (no walk through containers)."""

_DEVICE_NAMES: dict[torch.device, str] = {}


def _device(t: torch.Tensor) -> str:
    """``"cpu"``, ``"cuda:0"`` (cached per device: a hot helper)."""
    d = t.device
    name = _DEVICE_NAMES.get(d)
    if name is None:
        name = _DEVICE_NAMES[d] = d.type if d.index is None or d.type == "cpu" else f"{d.type}:{d.index}"
    return name


class Tracer(Provenance):
    """Collects Calls during one forward; holds tensors only through weak references."""

    def __init__(self, ops: bool, declared_sizes: dict[str, int], by_dims: dict[str, int] | None = None) -> None:
        super().__init__()  # the data flow (origins, token_of, in_flow)
        self.ops = ops
        self.calls: list[Call] = []
        # open module calls: (call, id(module), user code?, the exception being handled when it started)
        self.stack: list[tuple[Call, int, bool, BaseException | None]] = []
        self.pending: list[TensorInfo] = []  # in the order they were seen
        self.hows: dict[int, tuple[TensorInfo, How]] = {}
        self.out_of: dict[int, int] = {}  # id(output info) -> index of its call
        self.seen: dict[int, tuple[weakref.ref, TensorInfo]] = {}
        self.declared = dict(declared_sizes)
        self.by_dims = dict(by_dims or {})  # the sizes sv.dims declared: a unique one names dims by size
        self.learned: dict[str, set[int]] = {}
        # what the recurrent calls named, learned in :meth:`resolve`: (names, shape, id(conv)) or ("sizes", id(conv))
        self.to_learn: dict[tuple, Conventions] = {}
        self.failed: Call | None = None
        self.busy = False
        self.finished = False  # set by close(): enter/exit do nothing after it
        self.self_labels: dict[int, list[str]] = {}  # see FrameLabels
        self.mode: OpMode | None = None  # the op mode recording this forward (set by OpMode)
        self.quiet: int | None = None  # the stack depth of a quiet module call that took the mode off
        self.quiet_thread = 0  # the thread it took the mode off in (the one whose mode stack holds it)
        self.quiet_module = 0  # id() of the module of that quiet call
        # (id(conventions), batched, packed) -> its dims; the Conventions live in the calls meanwhile
        self.dims_cache: dict[tuple[int, bool, bool], dict[str, tuple[str, ...]]] = {}
        # one step of a dim (x[t], unbind, split(1)): id(piece) -> (weak ref, the source's record, the dim)
        self.slices: dict[int, tuple[weakref.ref, TensorInfo, int]] = {}
        self.stepped: list[tuple[TensorInfo, TensorInfo, int]] = []  # (a piece's record, source, dim)

    # ------------------------------------------------------------ tensors -> infos
    def _known(self, t: torch.Tensor) -> TensorInfo | None:
        hit = self.seen.get(id(t))
        if hit is not None and hit[0]() is t:
            return hit[1]
        return None

    def _remember(self, t: torch.Tensor, info: TensorInfo) -> None:
        try:  # noqa: SIM105 - a hot path: cheaper than contextlib.suppress
            self.seen[id(t)] = (weakref.ref(t), info)
        except TypeError:  # not weak-referenceable: just not remembered
            pass

    def info(self, t: torch.Tensor, how: How | None, *, key: str = "", role: str = "", label: str = "",
             packed: str = "", repeat: int = 1, keep_known: bool = False) -> TensorInfo:
        """The record of ``t``, named by ``how`` once the forward is done; with no ``how`` (or with
        ``keep_known`` for a tensor recorded before) it takes the earlier record's names, else its sizes'."""
        if t.is_nested:  # its sizes differ per component: recorded as what it is, no shape
            return _opaque(t, "nested tensor", role, key, label, packed, repeat)
        try:
            info = TensorInfo(tuple(t.shape), None, role, key, label, _dtype(t), _device(t), False, packed, repeat)
        except Exception:  # a tensor subclass whose shape cannot be read: recorded as such, never an error
            return _opaque(t, type(t).__name__, role, key, label, packed, repeat)
        if self.origins:
            info.flow = self.flow_of(t)
            info.tokens = self.tokens_of(t)
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
        exact = how.kind is Naming.EXACT
        final = _exact_final(how.names) if exact else None
        if final is not None:  # every dim given a name: final now (nothing later renames an exact record)
            info.names, info.origins, info.ambiguous = how.names, (how.origin,) * len(how.names), final
        else:
            self.pending.append(info)
            self.hows[id(info)] = (info, how)
        if exact and prev is not None and id(prev) in self.hows and self.hows[id(prev)][1].kind is not Naming.EXACT:
            self.hows[id(prev)] = (prev, How.alias(info))  # a module's conventions name it better
        if exact or prev is None:
            self._remember(t, info)
        if self.slices:
            hit = self.slices.get(id(t))
            if hit is not None and hit[0]() is t:
                self.stepped.append((info, hit[1], hit[2]))
        return info

    def note_step(self, func: Any, args: tuple, kwargs: dict[str, Any], out: Any) -> None:
        """``out`` is one step (or the steps) of a dim of ``args[0]`` (see :mod:`shapeviz.tracing.steps`):
        noted when the source was recorded, the evidence a loop over the pieces iterates that dim."""
        dim = step_dim(func, args, kwargs)
        src = self._known(args[0]) if dim is not None else None
        if src is None:
            return
        for piece in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(piece, torch.Tensor):
                try:
                    self.slices[id(piece)] = (weakref.ref(piece), src, int(dim))  # type: ignore[arg-type]
                except TypeError:  # not weak-referenceable
                    continue
                known = self._known(piece)
                if known is not None:
                    self.stepped.append((known, src, int(dim)))  # type: ignore[arg-type]

    def infos(self, obj: Any, key: str, how: How | None = None, *, keep_known: bool = False,
              labels: FrameLabels | None = None, tuples: bool = False,
              arg_names: Sequence[str] = ()) -> list[TensorInfo]:
        """Records of every tensor in ``obj`` (see :func:`~shapeviz.tracing.oprules.flatten`), all named by ``how``."""
        if type(obj) in _PLAIN and not arg_names:  # the usual operand: one tensor, no walk
            label = labels.name_of(obj) if labels is not None else ""
            return [self.info(obj, how, key=key, label=label, keep_known=keep_known)]
        out = []
        for k, t, packed in flatten(obj, key, tuples=tuples):
            repeat = 1
            if isinstance(t, tuple):
                t, repeat = t
            label = labels.name_of(t) if labels is not None else ""
            if arg_names and not label:
                label = arg_label(k, arg_names)
            out.append(self.info(t, how, key=k, label=label, packed=packed, repeat=repeat, keep_known=keep_known))
        return out

    # ------------------------------------------------------------ module calls
    def enter(self, path: str, module: Any, args: tuple, kwargs: dict[str, Any], user: bool,
              quiet: bool = False) -> None:
        """A module call starts. ``quiet``: a torch module without children (none of your code runs in
        it) whose forward hook is called on every path: the op mode steps aside until it ends. A finished
        trace records nothing (a hook that outlived it, on a copy of a module say, is inert)."""
        if self.finished:
            return
        with _off():
            self._enter(path, module, args, kwargs, user)
        if quiet and self.mode is not None and self.quiet is None and not self.ops_needed(module, args, kwargs):
            self.quiet = len(self.stack)
            self.quiet_thread, self.quiet_module = threading.get_ident(), id(module)
            if not pop_mode(self.mode):
                self.quiet = None

    def exit(self, module: Any, output: Any, always: bool = False) -> None:
        """A module call ends. ``always``: the hook is called on every path (``always_call``); it is
        called while handling an exception that was not being handled when the call started when the
        call raised: the call is closed as a failed one."""
        if self.finished:
            return
        if self.quiet is not None and threading.get_ident() == self.quiet_thread and (
                id(module) == self.quiet_module or self.quiet >= len(self.stack)):
            self.unquiet()  # the quiet call (or one around it) ends; never onto another thread's mode stack
        exc = sys.exc_info()[1] if always and output is None and self.stack else None
        if exc is not None:
            top = self.stack[-1]
            if top[1] == id(module):
                if exc is not top[3]:  # it raised: closed as a failed call
                    top[0].error = top[0].error or type(exc).__name__
                    self.stack.pop()
                    return
            elif all(entry[1] != id(module) for entry in self.stack):
                return  # its pre hook never ran (one before it raised): nothing of it is open
        with _off():
            self._exit(module, output)

    def unquiet(self) -> None:
        """Put the op mode back if a quiet module call took it off (every path of the forward ends here)."""
        if self.quiet is not None:
            self.quiet = None
            push_mode(self.mode)

    def ops_needed(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> bool:
        """Whether the op mode must see the ops inside this library module: a recurrent kernel on ``meta``."""
        if not is_recurrent(module):
            return False
        first = args[0] if args else kwargs.get("input")
        if isinstance(first, PackedSequence):
            first = first.data
        return not isinstance(first, torch.Tensor) or first.device.type == "meta"

    def _enter(self, path: str, module: Any, args: tuple, kwargs: dict[str, Any], user: bool) -> None:
        self.busy = True
        try:
            parent = self.stack[-1][0] if self.stack else None
            conv = conventions(module) if is_recurrent(module) else None
            call = Call(index=len(self.calls), path=path, type=type_name(module), kind=CallKind.MODULE,
                        conventions=conv, depth=len(self.stack),
                        parent=parent.index if parent is not None else None)
            self.calls.append(call)
            self.stack.append((call, id(module), user, sys.exc_info()[1]))
            site = user_frame()
            if site is not None:
                call.site, call.code = site_of(site)
            if conv is not None:
                call.inputs = self._recurrent(conv, args, kwargs, inputs=True, origin=f"conventions of {call.name}")
            else:
                call.inputs = self.infos(args, "", arg_names=forward_params(module))
                if kwargs:
                    call.inputs += self.infos(kwargs, "", arg_names=("*",))
                if self.origins:
                    self.open_call(call.index, call.inputs)
        finally:
            self.busy = False

    def _exit(self, module: Any, output: Any) -> None:
        self.busy = True
        try:
            while self.stack and self.stack[-1][1] != id(module):
                self.stack.pop()  # a call that raised inside a try/except of the user's
            if not self.stack:
                return
            call = self.stack.pop()[0]
            if call.conventions is not None:
                tensors: list[Any] = []
                call.outputs = self._recurrent(call.conventions, output, {}, inputs=False, tensors=tensors,
                                               origin=f"conventions of {call.name}")
                for pos, t in enumerate(tensors):  # a recurrent call's results start a new flow
                    self.mark(t, ((call.index, pos),), keep=False)
            else:
                call.outputs = self.infos(output, "", module_how(call.type, list(call.inputs), f"module {call.name}"),
                                          keep_known=True)
                if self.in_flow:
                    self.close_call(call.index, output)
            for o in call.outputs:
                self.out_of.setdefault(id(o), call.index)
        finally:
            self.busy = False

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
        for key, value, roles in top:
            if value is None:
                continue
            # a list state ([h, c] from a detach in a training loop) is listed tensor by tensor, as a tuple is
            items = [(key, value, "")] if type(value) is torch.Tensor else list(flatten(_no_lists(value), key))
            for n, (k, t, part) in enumerate(items):
                if isinstance(t, tuple):
                    t = t[0]
                role = roles[min(n, len(roles) - 1)] if part == "" else roles[0]
                b = batched if batched is not None else t.dim() == layout.state_batched_ndim
                dims = self.dims_cache.get((id(conv), b, packed))
                if dims is None:
                    dims = self.dims_cache[(id(conv), b, packed)] = conv.dims(batched=b, packed=packed)
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
                if names:  # learned when the forward is done, in this order (a repeat adds nothing)
                    self.to_learn.setdefault((names, info.shape, id(conv)), conv)
        self.to_learn.setdefault(("sizes", id(conv)), conv)
        return infos

    def learn(self) -> None:
        """Learn the sizes the recurrent calls named, in the order they were recorded."""
        declared, learned = self.declared, self.learned
        for key, conv in self.to_learn.items():
            for name, size in learned_sizes(key, conv):
                if name not in declared:
                    sizes = learned.get(name)
                    if sizes is None:
                        learned[name] = {size}
                    else:
                        sizes.add(size)
        self.to_learn.clear()

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
                self.carry((args, kwargs), out)
        finally:
            self.busy = False

    def _op_call(self, name: str, args: tuple, kwargs: dict[str, Any], frame: FrameType | None) -> Call:
        parent = self.stack[-1][0] if self.stack else None
        call = Call(index=len(self.calls), path=parent.path if parent is not None else "", type=name,
                    kind=CallKind.OP, depth=len(self.stack), parent=parent.index if parent is not None else None,
                    params=op_params(args, kwargs))
        labels = None
        if frame is not None:
            call.source, call.code = site_of(frame)
            labels = FrameLabels(frame, self.self_labels)
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
        self.learn()
        namer = Namer(self.declared, self.learned, self.by_dims)
        r = Resolver(namer, self.hows)
        for info in self.pending:
            r.resolve(info)
        for call in self.calls:  # a view/reshape that cut across named dims: the event is kept
            if call.kind is CallKind.OP and call.type.strip("_") in RESHAPES:
                flag_scramble(call, namer)
        self.pending.clear()
        self.hows.clear()
        for info, src, dim in self.stepped:  # a step of a dim, named when its name is evidence (not a guess)
            name = src.names[dim] if src.names and dim < len(src.names) else ""
            plain = bool(name) and "?" not in name and "|" not in name and "*" not in name
            info.step = (name if plain else "", int(src.shape[dim]))
        self.stepped.clear()
        sizes = {n: [s] for n, s in self.declared.items()}
        for n, ss in self.learned.items():
            sizes.setdefault(n, sorted(ss))
        return sizes

    def close(self) -> None:
        """The forward is over: what it held is let go, and nothing is recorded from now on."""
        self.finished = True
        self.seen.clear()
        self.slices.clear()
        self.clear_flows()
        self.out_of.clear()
        self.stack.clear()
        self.self_labels.clear()


def _opaque(t: Any, what: str, role: str, key: str, label: str, packed: str, repeat: int) -> TensorInfo:
    """The record of a tensor whose shape shapeviz cannot describe (a nested tensor): what it is, no shape, no
    names, never remembered (nothing is named from it).

    >>> import torch
    >>> nt = torch.nested.nested_tensor([torch.zeros(2, 3), torch.zeros(4, 3)], layout=torch.jagged)
    >>> _opaque(nt, "nested tensor", "", "0", "x", "", 1).describe()
    'x (nested tensor: shape not described)'
    """
    def read(f: Any, default: str) -> str:
        try:
            return f(t)
        except Exception:
            return default

    return TensorInfo((), (), role, key, label, read(_dtype, "?"), read(_device, "?"), False, packed, repeat,
                      opaque=what)


def _no_lists(obj: Any) -> Any:
    """Lists as tuples (nested too), so :func:`flatten` lists every tensor of a state one by one.

    >>> _no_lists([1, [2, 3]])
    (1, (2, 3))
    """
    return tuple(_no_lists(o) for o in obj) if type(obj) in (list, tuple) else obj  # a PackedSequence stays


@functools.lru_cache(maxsize=4096)
def _exact_final(names: tuple[str, ...]) -> bool | None:
    """For names given exactly: None unless every dim has a plain (not guessed) name, else whether one
    is ambiguous (``"T|bs"``).

    >>> _exact_final(("T", "bs", "emb")), _exact_final(("T", "")), _exact_final(("T|bs", "h"))
    (False, None, True)
    """
    if not all(names) or any(n.endswith("?") for n in names):
        return None
    return any("|" in n for n in names)


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


def _off() -> Any:
    """No torch-function handling (our own mode included) while a hook reads shapes."""
    return torch._C.DisableTorchFunction()


_RNN_KERNELS = frozenset({torch._VF.lstm, torch._VF.gru, torch._VF.rnn_tanh, torch._VF.rnn_relu})  # type: ignore[attr-defined]


_SETITEM = torch.Tensor.__setitem__


class OpMode(TorchFunctionMode):
    """Records torch ops run by your code (``ops=True``) and the op that raised (always)."""

    def __init__(self, tracer: Tracer) -> None:
        super().__init__()
        self.tracer = tracer
        tracer.mode = self

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
            if func in STEP_FUNCS and not tr.busy and tr.user_code():
                tr.note_step(func, args, kwargs, res)
            if tr.origins and not tr.busy and tr.user_code():
                tr.busy = True
                try:
                    tr.carry((args, kwargs), args[0] if func is _SETITEM else res)
                finally:
                    tr.busy = False
            return res
        name = op_name(func)
        try:
            out = func(*args, **kwargs)
        except Exception as exc:
            tr.op_failed(func, args, kwargs, exc)
            raise
        frame = user_frame(direct=True) if name is not None and has_tensor(out) else None
        if frame is not None:
            tr.record_op(name, func, args, kwargs, out, frame)  # type: ignore[arg-type]
        elif tr.origins:  # not recorded (x.data, x[t] = y): the data flow still goes through it
            tr.busy = True
            try:
                tr.carry((args, kwargs), args[0] if func is _SETITEM else out)
            finally:
                tr.busy = False
        if func in STEP_FUNCS:
            tr.note_step(func, args, kwargs, out)
        return out
