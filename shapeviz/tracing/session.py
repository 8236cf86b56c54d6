"""Tensor-shape traces of a forward pass: every module call (and with ``ops=True`` every torch
operation in your code) in order, with named dims. A trace holds shapes, dtypes, devices and
names, never tensors.

>>> import torch, torch.nn as nn
>>> t = trace(nn.GRU(8, 16, batch_first=True), torch.zeros(2, 5, 8))
>>> [(i.role, i.shape, i.names) for i in t.calls[0].outputs]
[('output', (2, 5, 16), ('bs', 'T', 'D*h')), ('h_n', (1, 2, 16), ('layers*D', 'bs', 'h'))]

How dims get their names:

* a recurrent module's arguments and results: from its :class:`~shapeviz.core.model.Conventions`
  (``T``, ``bs``, ``emb``, ``layers*D``, ``h``, ``D*h``, ``sum(lengths)`` …); those sizes are
  then known by name for the rest of the trace;
* the first input: from ``inputs_dims="bs T"``; any size: from ``sv.dims(vocab=28, …)``;
* a tensor seen before (the same object) keeps its names; with ``ops=True`` names follow the
  operation (``X.T`` swaps them, ``X @ W`` keeps ``X``'s rows and ``W``'s columns, ``cat`` of
  ``T`` tensors of ``(bs, …)`` along dim 0 gives ``T*bs`` …);
* everything else by size, as a *guess*: a dim whose size is a known name's size is named
  ``"T?"`` (shown ``T?=5``), ``"T|bs?"`` where two names share the size (the tensor is marked
  ``ambiguous``); a size declared with ``sv.dims`` that no other name shares is named plainly.
  Products (``T*bs``) and size 1 are never named by size. Unnamed dims are ``""``.

``TensorInfo.origins`` says, per dim, where its name came from (``"conventions of rnn"``,
``"inputs_dims"``, ``"sv.name"``, ``"op transpose"``, ``"size (guess)"`` …).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn

from shapeviz._errors import SpecError
from shapeviz.core.dimensions import declared, parse_names, pop, push
from shapeviz.core.model import is_recurrent
from shapeviz.tracing import copies
from shapeviz.tracing.copies import ShapevizHook
from shapeviz.tracing.direct import direct_calls
from shapeviz.tracing.oprules import flatten
from shapeviz.tracing.recorder import OpMode, Tracer, quiet_hooks_supported
from shapeviz.tracing.records import Call, CallKind, TensorInfo, Trace
from shapeviz.tracing.runs import Calls
from shapeviz.tracing.sites import type_name

__all__ = ["keep_kinds", "plain_tensor_attrs", "trace", "trace_named"]

_MAX_NOTE_CALLS = 12


def _modules(model: Any, inputs: Sequence[Any] = ()) -> list[tuple[str, nn.Module]]:
    """The modules to hook: the model's own, or every ``nn.Module`` a callable can reach.

    >>> import functools, torch.nn as nn
    >>> rnn = nn.GRU(4, 8)
    >>> [p for p, _ in _modules(functools.partial(lambda m, x: m(x), rnn))]
    ['m']
    """
    if isinstance(model, nn.Module):
        return list(model.named_modules())
    out: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    for attr, value in _reachable(model, inputs):
        found = [value] if isinstance(value, nn.Module) else _modules_in(value)
        for n, v in enumerate(found):
            prefix = attr if v is value else f"{attr}.{n}"
            for sub, m in v.named_modules(prefix=prefix):
                if id(m) not in seen:
                    seen.add(id(m))
                    out.append((sub, m))
    return out


def _modules_in(value: Any) -> list[nn.Module]:
    """The modules in a list, tuple or dict (one level deep)."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, nn.Module)]
    return []


_SEARCHED = ("the object's attributes (a bound method's self)", "functools.partial arguments",
             "closure variables", "default arguments", "globals the function names", "the inputs")


def _reachable(fn: Any, inputs: Sequence[Any]) -> list[tuple[str, Any]]:
    """(name, value) pairs a callable can reach: see ``_SEARCHED``, in that order."""
    out: list[tuple[str, Any]] = []
    while isinstance(fn, functools.partial):
        try:
            names = list(inspect.signature(fn.func).parameters)
        except (TypeError, ValueError):
            names = []
        out += [(names[i] if i < len(names) else f"partial.args[{i}]", a) for i, a in enumerate(fn.args)]
        out += sorted(fn.keywords.items())
        fn = fn.func
    owner = getattr(fn, "__self__", None)
    if owner is not None and not isinstance(owner, type) and not inspect.ismodule(owner):
        if isinstance(owner, nn.Module):
            out.append(("", owner))
        else:
            out += sorted(getattr(owner, "__dict__", {}).items())
        fn = getattr(fn, "__func__", fn)
    if not inspect.isfunction(fn):
        if not callable(fn) or isinstance(fn, type):
            return out
        out += sorted(getattr(fn, "__dict__", {}).items())  # an object with __call__
        fn = getattr(type(fn).__call__, "__func__", type(fn).__call__)
        if not inspect.isfunction(fn):
            return out
    code = fn.__code__
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        with contextlib.suppress(ValueError):  # an empty cell
            out.append((name, cell.cell_contents))
    params = [p for p in inspect.signature(fn).parameters.values() if p.default is not p.empty]
    out += [(p.name, p.default) for p in params]
    globs = fn.__globals__
    out += [(n, globs[n]) for n in code.co_names if n in globs]
    names = [p.name for p in inspect.signature(fn).parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = names[1:] if owner is not None and names[:1] == ["self"] else names
    out += [(names[i] if i < len(names) else f"inputs[{i}]", v) for i, v in enumerate(inputs)]
    return out


def _is_user_module(m: Any) -> bool:
    mod = type(m).__module__ or ""
    return not (mod == "torch" or mod.startswith("torch."))


def _first_tensor(args: tuple, kwargs: dict[str, Any]) -> torch.Tensor | None:
    if args and type(args[0]) is torch.Tensor:
        return args[0]
    for _, t, part in flatten(list(args) + list(kwargs.values()), ""):
        if isinstance(t, tuple):
            t = t[0]
        if part != "batch_sizes":
            return t
    return None


def trace(model: Any, *inputs: Any, ops: bool = False, inputs_dims: str | None = None, **kwargs: Any) -> Trace:
    """Run ``model(*inputs, **kwargs)`` once and record every module call with named shapes.

    >>> import torch, torch.nn as nn
    >>> t = trace(nn.LSTM(10, 20, num_layers=2), torch.zeros(5, 3, 10))
    >>> [(i.role, i.format()) for i in t.calls[0].outputs]
    [('output', '(T=5, bs=3, D*h=20)'), ('h_n', '(layers*D=2, bs=3, h=20)'), ('c_n', '(layers*D=2, bs=3, h=20)')]

    ``ops=True`` also records the torch operations your own code runs (``X @ W``, ``cat``,
    ``one_hot``, ``.T``, ``reshape`` …) with file and line, so a hand-written loop shows each
    step. ``inputs_dims="bs T"`` names the dims of the first input (its leading ones, where it names fewer,
    as ``watch(inputs=)`` does); ``sv.dims(vocab=28)`` around
    the call names sizes. ``model`` may be an ``nn.Module``, any object with ``__call__`` (its
    ``nn.Module`` attributes are traced too) or a function.

    The forward runs once in eval mode under ``torch.no_grad()``; hooks, the op mode and every
    module's ``training`` flag are restored on every path. On the ``meta`` device recurrent
    layers are not run (their results are shaped from the Conventions), so big models trace in
    milliseconds. If the forward raises, the exception reaches you with a note: the calls traced
    so far and, for a failing op, its operands in named dims with the source line.

    The records are named and repeated steps grouped when the trace is first read (its ``calls``
    or ``sizes``), not inside this call, as torch's profiler reads its events when asked for them;
    a trace of more than :data:`UNREAD_RECORDS` records is named and grouped at once (what an unread
    trace holds stays bounded: grouped, a long loop keeps a few bytes per op).
    """
    names = parse_names(inputs_dims, "trace(inputs_dims=...)") if inputs_dims is not None else None
    declared_sizes = dict(declared() or {})
    first = _first_tensor(inputs, kwargs)
    first_sizes: dict[str, int] = {}
    if names is not None:
        if first is None:
            raise SpecError("trace(inputs_dims=...): there is no tensor input to name")
        if first.is_nested:
            raise SpecError(f"trace(inputs_dims={inputs_dims!r}): the first input is a nested tensor, whose sizes "
                            "differ from one component to the next; name the dims of a padded tensor instead")
        if first.dim() < len(names):
            raise SpecError(f"trace(inputs_dims={inputs_dims!r}): {len(names)} names for the first input, "
                            f"which has {first.dim()} dims {tuple(first.shape)}")
        first_sizes = {n: int(s) for n, s in zip(names, first.shape)}
        names = (*names, *("",) * (first.dim() - len(names)))  # the leading dims, as watch(inputs=) names them
        for n, s in first_sizes.items():
            if declared_sizes.get(n, s) != s:
                raise SpecError(f"trace(inputs_dims={inputs_dims!r}): {n}={s} in the first input, "
                                f"but sv.dims declared {n}={declared_sizes[n]}")
        declared_sizes.update(first_sizes)
    tracer = Tracer(ops, declared_sizes, {n: s for n, s in (declared() or {}).items() if n not in first_sizes})
    if names is not None and first is not None:  # lends its names to the first input's records
        _name_input(tracer, first, names)
    return _record(tracer, model, inputs, kwargs, first, first_sizes)


def trace_named(model: nn.Module, inputs: tuple, kwargs: dict[str, Any],
                named: Sequence[tuple[torch.Tensor, tuple[str, ...]]], sizes: dict[str, int],
                by_size: dict[str, int]) -> Trace:
    """A trace of ``model(*inputs, **kwargs)`` (module calls) whose input tensors in ``named`` carry the names
    given, each its own (a dry run's specs: ``a`` as ``(bs=6, T=4)``, ``b`` as ``(bs=4, T=6)``).

    ``sizes``: the sizes known by name, declared (:func:`~shapeviz.core.dimensions.push`) while the forward runs;
    ``by_size``: the declared sizes that may name a dim by size alone (what ``sv.dims`` declared); any other size
    that matches is a guess (``vocab?=36``).

    >>> import torch, torch.nn as nn
    >>> t = trace_named(nn.GRU(4, 8), (torch.zeros(5, 2, 4),), {}, [], {}, {})
    >>> t.calls[0].inputs[0].format()
    '(T=5, bs=2, emb=4)'
    """
    for n, (t, names) in enumerate(named):
        if t.dim() != len(names):
            raise SpecError(f"trace_named: {len(names)} names for input {n}, which has {t.dim()} dims {tuple(t.shape)}")
    tracer = Tracer(False, {**(declared() or {}), **sizes}, dict(by_size))
    for t, names in named:
        _name_input(tracer, t, names)
    return _record(tracer, model, inputs, kwargs, _first_tensor(inputs, kwargs), dict(sizes))


def _name_input(tracer: Tracer, t: torch.Tensor, names: tuple[str, ...]) -> None:
    """Lend ``names`` to the records of input ``t`` (declared, not guessed: origin ``inputs_dims``)."""
    tracer.book.remember(t, TensorInfo(shape=tuple(int(s) for s in t.shape), names=names,
                                       origins=("inputs_dims",) * len(names)))


def _record(tracer: Tracer, model: Any, inputs: tuple, kwargs: dict[str, Any], first: torch.Tensor | None,
            first_sizes: dict[str, int]) -> Trace:
    """Run the forward once, recording into ``tracer``; ``first_sizes`` are declared while it runs."""
    ops = tracer.ops
    modules = _modules(model, list(inputs) + list(kwargs.values()))
    if not modules and not ops and not isinstance(model, nn.Module):
        raise SpecError(f"trace({type_name(model)}): found no nn.Module to record; searched "
                        + ", ".join(_SEARCHED) + ". Pass the model itself (sv.trace(model, x)), "
                        "or ops=True to record the torch operations of a hand-written loop")
    users = {id(m): _is_user_module(m) for _, m in modules}
    # the op mode sees the ops of your code (and shapes recurrent kernels on meta): a model made only of
    # torch modules, on a real device, without ops=True, runs none of your code and needs none
    needs_mode = ops or not isinstance(model, nn.Module) or any(users.values()) or first is None \
        or first.device.type == "meta"
    young = _raise_young_threshold() if ops else None  # (a trace of module calls alone makes few records)
    try:
        _run_forward(tracer, model, modules, users, inputs, kwargs, first_sizes, needs_mode)
        # made before the threshold is back: an allocation after it would have the collector walk every record
        made = Trace._unfinished(functools.partial(_finish, tracer), type_name(model), ops)
        if len(tracer.calls) > UNREAD_RECORDS:
            made._finished()
        return made
    finally:
        _restore_threshold(young)


def _finish(tracer: Tracer) -> tuple[Calls, dict[str, list[int]]]:
    """The calls and sizes of a trace, on its first read (:meth:`Trace._unfinished`): every record named, repeated
    steps grouped. The forward is over: the tracer holds records, no tensor."""
    young = _raise_young_threshold() if tracer.ops else None
    try:
        sizes = tracer.resolve()
        return Calls(tracer.calls), sizes
    finally:
        _restore_threshold(young)


def _run_forward(tracer: Tracer, model: Any, modules: list[tuple[str, nn.Module]], users: dict[int, bool],
                 inputs: tuple, kwargs: dict[str, Any], first_sizes: dict[str, int], needs_mode: bool) -> None:
    """Run ``model(*inputs, **kwargs)`` once with the hooks (and the op mode) recording into ``tracer``. Hooks, the
    mode, the modules' ``training`` flags and the declared sizes are back on every path; a forward that raises gets
    the calls traced so far in a note."""
    training = {id(m): (m, m.training) for _, m in modules}
    plain = plain_tensor_attrs(m for _, m in modules)
    handles: list[Any] = []
    plain_root = not isinstance(model, nn.Module) or isinstance(model, torch.jit.ScriptModule)  # one opaque call
    mode = OpMode(tracer) if needs_mode else contextlib.nullcontext()
    quiet_ok = quiet_hooks_supported()
    held = False
    token = push(first_sizes) if first_sizes else None
    try:
        post = _Post(tracer, quiet_ok)
        for path, m in modules:
            if isinstance(m, torch.jit.ScriptModule):
                continue  # scripted or traced: torch runs it without Python and refuses hooks (left out)
            user = users[id(m)]
            # a torch module without children runs none of your code: the op mode can step aside in it
            quiet = quiet_ok and not user and not m._modules
            if "forward" not in m.__dict__ and (is_recurrent(m) or type(m).__getstate__ is not nn.Module.__getstate__):
                # recorded through its class's forward: m.forward(x) is seen too, and a copy of an nn.LSTM
                # (whose own __getstate__ would keep hooks) carries nothing
                handles.append(direct_calls(tracer, path, m, user, quiet))
                continue
            if not held:  # a module copied during the forward (an EMA copy, say) carries none of the hooks below
                copies.hold()
                held = True
            handles.append(m.register_forward_pre_hook(_Pre(tracer, path, user, quiet), with_kwargs=True))
            if quiet_ok:  # called when the call raises too: the failed call is closed
                handles.append(m.register_forward_hook(post, with_kwargs=True, always_call=True))
            else:
                handles.append(m.register_forward_hook(post, with_kwargs=True))
        for m, was in training.values():
            if was:
                m.training = False
        with torch.no_grad(), mode:
            try:
                if plain_root:
                    tracer.enter("", model, inputs, kwargs, True)  # labels from the callable's parameters
                    out = model(*inputs, **kwargs)
                    tracer.exit(model, out)
                else:
                    out = model(*inputs, **kwargs)
                del out  # not kept: a trace holds no tensors
            finally:
                tracer.unquiet()  # the mode back on its stack before it is exited
    except Exception as exc:
        _annotate(exc, tracer, model)
        raise
    finally:
        for h in handles:
            h.remove()
        if held:
            copies.release()
        for m, was in training.values():
            if was or m.training:  # one the forward left in training mode is put back too
                m.training = was
        keep_kinds(plain)
        if token is not None:
            pop(token)
        tracer.close()


def plain_tensor_attrs(modules: Iterable[nn.Module]) -> list[tuple[nn.Module, str, torch.Tensor]]:
    """The tensors ``modules`` keep as plain attributes, neither parameters nor buffers (what :func:`keep_kinds`
    needs).

    >>> import torch, torch.nn as nn
    >>> lin = nn.Linear(2, 2)
    >>> lin.mask = torch.ones(2)
    >>> [k for _, k, _ in plain_tensor_attrs([lin])]
    ['mask']
    """
    return [(m, k, v) for m in modules for k, v in vars(m).items() if isinstance(v, torch.Tensor)]


def keep_kinds(plain: Sequence[tuple[nn.Module, str, torch.Tensor]]) -> None:
    """Each plain tensor attribute of ``plain`` that the forward made a parameter or buffer is a plain attribute
    again, with the tensor it held. An AWD-LSTM weight drop sets ``rnn.weight_hh_l0 = F.dropout(raw, p,
    self.training)``: in eval mode (a trace's) that is ``raw`` itself, a Parameter, which ``nn.Module`` registers,
    and the model's next call in training mode would fail."""
    for m, k, v in plain:
        if k in m._parameters or k in m._buffers:
            m._parameters.pop(k, None)
            m._buffers.pop(k, None)
            m.__dict__[k] = v  # not setattr: an RNN's __setattr__ would write into its weight list


UNREAD_RECORDS = 4096
"""The most records a trace keeps unread (about 1.5 KB each, 6 MB): one with more is named and grouped at once."""

_YOUNG = 100_000
"""The garbage collector's first threshold while a trace records ops (allocations between two collections of the
youngest objects; Python's default is 700). A trace's records are up to hundreds of thousands of small objects that
all live until it is made, none of them part of a reference cycle: with the default, the collector walks them (and
every object of the program) again and again, most of a trace's time for a long loop. Collections still happen,
every 100,000 allocations. Raised while the forward runs and again while the trace's first read names and groups
its records (:func:`_finish`)."""


def _raise_young_threshold() -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Raise the collector's first threshold to ``_YOUNG``; (the thresholds before, ours), or None where it is
    off or already that high. The thresholds are process-wide: :func:`_restore_threshold` puts them back."""
    before = gc.get_threshold()
    if not gc.isenabled() or before[0] == 0 or before[0] >= _YOUNG:
        return None
    ours = (_YOUNG, *before[1:])
    gc.set_threshold(*ours)
    return before, ours


def _restore_threshold(young: tuple[tuple[int, ...], tuple[int, ...]] | None) -> None:
    """The thresholds as they were before :func:`_raise_young_threshold`, unless something else set others since."""
    if young is not None and gc.get_threshold() == young[1]:
        gc.set_threshold(*young[0])


class _Pre(ShapevizHook):
    """The forward pre hook of one traced module (a :class:`~shapeviz.tracing.copies.ShapevizHook`: a copy of
    the module leaves it out)."""

    __slots__ = ("path", "quiet", "tracer", "user")

    def __init__(self, tracer: Tracer, path: str, user: bool, quiet: bool) -> None:
        self.tracer, self.path, self.user, self.quiet = tracer, path, user, quiet

    def __call__(self, mod: nn.Module, args: tuple, kw: dict[str, Any]) -> None:
        self.tracer.enter(self.path, mod, args, kw, self.user, self.quiet)


class _Post(ShapevizHook):
    """The forward hook of every traced module (left out of copies, like :class:`_Pre`)."""

    __slots__ = ("always", "tracer")

    def __init__(self, tracer: Tracer, always: bool) -> None:
        self.tracer, self.always = tracer, always

    def __call__(self, mod: nn.Module, args: tuple, kw: dict[str, Any], output: Any) -> None:
        self.tracer.exit(mod, output, self.always)


def _annotate(exc: BaseException, tracer: Tracer, model: Any) -> None:
    """Add a note to ``exc``: the calls traced so far and the failing op in named dims."""
    try:
        if tracer.failed is not None:
            tracer.failed.index = len(tracer.calls)
            tracer.calls.append(tracer.failed)
        for call, *_ in tracer.stack:
            if not call.outputs:
                call.error = call.error or f"{type(exc).__name__}"
        tracer.close()
        sizes = tracer.resolve()
        partial = Trace(calls=tracer.calls, model=type_name(model), ops=tracer.ops, sizes=sizes,
                        error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        note = _note(partial, tracer.failed)
    except Exception as inner:  # never hide the user's exception behind ours
        note = f"shapeviz.trace: (could not describe the partial trace: {inner!r})"
        partial = None
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    if partial is not None:
        with contextlib.suppress(AttributeError, TypeError):
            exc.shapeviz_trace = partial  # type: ignore[attr-defined]


def _note(t: Trace, failed: Call | None) -> str:
    done = [c for c in t.calls if c is not failed]
    lines = [f"shapeviz.trace: the forward pass of {t.model} raised after {len(done)} recorded "
             f"call{'s' if len(done) != 1 else ''}" + (f" (the last {_MAX_NOTE_CALLS}):" if len(done) >
                                                       _MAX_NOTE_CALLS else ":")]
    for c in done[-_MAX_NOTE_CALLS:]:
        name = c.type if c.kind is CallKind.OP or not c.path else f"{c.path} ({c.type})"
        where = f"  {c.source}" if c.source else ""
        lines.append(f"  {c.index:>3} {'  ' * c.depth}{name}: {c.describe()}{where}")
    if failed is not None:
        where = f" in {failed.path}" if failed.path else ""
        lines.append(f"failing op{where}: {failed.type} at {failed.source or '?'}"
                     + (f": {failed.code}" if failed.code else ""))
        lines.append(f"  {failed.describe().replace(' → ✗ raised', '')}")
        extra = _mismatch(failed)
        if extra:
            lines.append(f"  {extra}")
    return "\n".join(lines)


def _mismatch(call: Call) -> str:
    """For a matmul-like op: which named dims should agree and do not."""
    if call.type.strip("_") in ("matmul", "mm", "bmm", "rmatmul") and len(call.inputs) == 2:
        a, b = call.inputs
        if a.shape and len(b.shape) >= 1:
            ka = (a.names[-1] if a.names else "") or "?"
            kb_i = -2 if len(b.shape) >= 2 else -1
            kb = (b.names[kb_i] if b.names else "") or "?"
            if a.shape[-1] != b.shape[kb_i]:
                return (f"the contracted dims differ: {a.label or 'left'}'s last dim {ka}={a.shape[-1]} "
                        f"vs {b.label or 'right'}'s {'rows' if kb_i == -2 else 'only dim'} {kb}={b.shape[kb_i]}")
    return ""
