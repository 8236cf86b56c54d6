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
* everything else by size: a dim whose size is a known name's size gets that name, a size equal
  to T times bs gets ``"T*bs"`` (the flattened sequence; other products are left unnamed);
  where two names share the size the dim is named ``"T|bs"``
  and the tensor is marked ``ambiguous``. Unnamed dims are ``""``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn as nn

from shapeviz._errors import SpecError
from shapeviz.core.dimensions import declared, parse_names, pop, push
from shapeviz.tracing.oprules import flatten
from shapeviz.tracing.recorder import OpMode, Tracer, type_name
from shapeviz.tracing.records import Call, CallKind, TensorInfo, Trace

__all__ = ["trace"]

_MAX_NOTE_CALLS = 12


def _modules(model: Any) -> list[tuple[str, nn.Module]]:
    """The modules to hook: the model's own, or a plain object's nn.Module attributes."""
    if isinstance(model, nn.Module):
        return list(model.named_modules())
    out: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    for attr, value in sorted(getattr(model, "__dict__", {}).items()):
        if isinstance(value, nn.Module):
            for sub, m in value.named_modules(prefix=attr):
                if id(m) not in seen:
                    seen.add(id(m))
                    out.append((sub, m))
    return out


def _is_user_module(m: Any) -> bool:
    mod = type(m).__module__ or ""
    return not (mod == "torch" or mod.startswith("torch."))


def _first_tensor(args: tuple, kwargs: dict[str, Any]) -> torch.Tensor | None:
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
    step. ``inputs_dims="bs T"`` names the dims of the first input; ``sv.dims(vocab=28)`` around
    the call names sizes. ``model`` may be an ``nn.Module``, any object with ``__call__`` (its
    ``nn.Module`` attributes are traced too) or a function.

    The forward runs once in eval mode under ``torch.no_grad()``; hooks, the op mode and every
    module's ``training`` flag are restored on every path. On the ``meta`` device recurrent
    layers are not run (their results are shaped from the Conventions), so big models trace in
    milliseconds. If the forward raises, the exception reaches you with a note: the calls traced
    so far and, for a failing op, its operands in named dims with the source line.
    """
    names = parse_names(inputs_dims, "trace(inputs_dims=...)") if inputs_dims is not None else None
    declared_sizes = dict(declared() or {})
    first = _first_tensor(inputs, kwargs)
    first_sizes: dict[str, int] = {}
    if names is not None:
        if first is None:
            raise SpecError("trace(inputs_dims=...): there is no tensor input to name")
        if first.dim() != len(names):
            raise SpecError(f"trace(inputs_dims={inputs_dims!r}): {len(names)} names for the first input, "
                            f"which has {first.dim()} dims {tuple(first.shape)}")
        first_sizes = {n: int(s) for n, s in zip(names, first.shape)}
        for n, s in first_sizes.items():
            if declared_sizes.get(n, s) != s:
                raise SpecError(f"trace(inputs_dims={inputs_dims!r}): {n}={s} in the first input, "
                                f"but sv.dims declared {n}={declared_sizes[n]}")
        declared_sizes.update(first_sizes)
    tracer = Tracer(ops, declared_sizes)
    if names is not None and first is not None:  # lends its names to the first input's records
        tracer._remember(first, TensorInfo(shape=tuple(int(s) for s in first.shape), names=names))

    modules = _modules(model)
    training = {id(m): (m, m.training) for _, m in modules}
    handles: list[Any] = []
    plain_root = not isinstance(model, nn.Module)
    token = push(first_sizes) if first_sizes else None
    mode = OpMode(tracer)
    out: Any = None
    try:
        for path, m in modules:
            user = _is_user_module(m)

            def pre(mod: nn.Module, args: tuple, kw: dict, _p: str = path, _u: bool = user) -> None:
                tracer.enter(_p, mod, args, kw, _u)

            def post(mod: nn.Module, args: tuple, kw: dict, output: Any) -> None:
                tracer.exit(mod, output)

            handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(m.register_forward_hook(post, with_kwargs=True))
        for m, _ in training.values():
            m.training = False
        with torch.no_grad(), mode:
            if plain_root:
                tracer.enter("", model, inputs, kwargs, True)  # labels from the callable's parameters
                out = model(*inputs, **kwargs)
                tracer.exit(model, out)
            else:
                out = model(*inputs, **kwargs)
    except Exception as exc:
        _annotate(exc, tracer, model)
        raise
    finally:
        for h in handles:
            h.remove()
        for m, was in training.values():
            m.training = was
        if token is not None:
            pop(token)
        tracer.close()
    del out
    sizes = tracer.resolve()
    return Trace(calls=tracer.calls, model=type_name(model), ops=ops, sizes=sizes)


def _annotate(exc: BaseException, tracer: Tracer, model: Any) -> None:
    """Add a note to ``exc``: the calls traced so far and the failing op in named dims."""
    try:
        if tracer.failed is not None:
            tracer.failed.index = len(tracer.calls)
            tracer.calls.append(tracer.failed)
        for call, _, _ in tracer.stack:
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
