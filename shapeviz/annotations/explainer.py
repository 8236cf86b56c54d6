"""The slow path of ``@check``: why a call was rejected, as a :class:`~shapeviz.ShapeError`.

>>> import torch
>>> from jaxtyping import Float
>>> from torch import Tensor
>>> from shapeviz.annotations.signature import compile_signature
>>> sig = compile_signature(lambda x, h: h, {"x": Float[Tensor, "bs emb"], "h": Float[Tensor, "bs h"]})
>>> err = explain_mismatch(sig, "@check step", (torch.zeros(3, 10), torch.zeros(4, 20)), [])
>>> err.code, err.argument, err.expected
('annotation', 'h', "Float[Tensor, 'bs h'] = (bs=3, h)")

It runs only after the generated checker said no. It walks the parsed annotations again with
the values, remembering where each dim was bound (an argument, the module's configuration,
``sv.dims``), decides symbolic dims with the same :func:`~shapeviz.annotations.solver.resolve`
as the fast path, and tries one transpose of the suspect arguments (the batch-first mistake).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from shapeviz._errors import ShapeError
from shapeviz.annotations.codegen import NO_DEFAULT, has_probe
from shapeviz.annotations.parser import AnnotationNode, ArraySpec, Dim, DimKind, NodeKind, dtype_matches, dtype_name
from shapeviz.annotations.pytypes import RETRIES, show_value
from shapeviz.annotations.signature import Signature
from shapeviz.annotations.solver import bind_variadic, evaluate, resolve
from shapeviz.core.dimensions import format_shape

__all__ = ["Seed", "explain_mismatch", "run_eagerly"]

Seed = tuple[str, int, str]
"""A size known before the arguments: ``(name, size, where it comes from)``."""

@dataclass
class _Failure:
    argument: str
    spec: ArraySpec | None
    actual: Any
    detail: str
    dim: Dim | None = None
    bound_by: str = ""  # the argument that bound the disagreeing dim (first)
    expected: str = ""  # a non-array hint's failure: the hint, as shown
    fix: str = ""  # ... and the hint line that says the fix


class _Walker:
    """Re-checks a call dim by dim, remembering where each size came from."""

    def __init__(self, sig: Signature, seeds: Sequence[Seed]) -> None:
        self.sig = sig
        self.env: list[Any] = [None] * len(sig.slots)
        self.where: list[str] = [""] * len(sig.slots)
        self.source: list[str] = [""] * len(sig.slots)  # argument name (or "") that bound it
        self.pending: list[tuple[int, Any, Dim, str, ArraySpec, tuple[int, ...]]] = []  # resolve()'s items
        self.names = {v: k for k, v in sig.slots.items()}
        for name, size, origin in seeds:
            slot = sig.slots.get(name)
            if slot is not None and self.env[slot] is None:
                self.env[slot] = size
                self.where[slot] = origin

    def bindings(self) -> str:
        parts = []
        for slot, value in enumerate(self.env):
            if value is None:
                continue
            shown = value[1] if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], bool) \
                else value
            if isinstance(shown, tuple):
                shown = format_shape(shown)
            parts.append(f"{self.names[slot]}={shown} ({self.where[slot]})")
        return "bindings: " + (", ".join(parts) if parts else "(none)")

    def walk(self, node: AnnotationNode | None, v: Any, label: str, top: str) -> _Failure | None:
        if node is None:
            return None
        if node.kind is NodeKind.ARRAY:
            assert node.array is not None
            return self._array(node.array, v, label, top)
        if node.kind is NodeKind.OPTIONAL:
            return None if v is None else self.walk(node.children[0], v, label, top)
        if node.kind is NodeKind.VARDICT:
            if not isinstance(v, dict):
                return _Failure(label, None, _describe(v), f"expected a dict, got {_describe(v)}")
            for key, item in v.items():
                f = self.walk(node.children[0], item, f"{label}[{key!r}]", top)
                if f is not None:
                    return f
            return None
        if node.kind in (NodeKind.TUPLE, NodeKind.VARTUPLE):
            n = len(node.children)
            if not isinstance(v, tuple) or (node.kind is NodeKind.TUPLE and len(v) != n):
                want = f"a tuple of {n}" if node.kind is NodeKind.TUPLE else "a tuple"
                return _Failure(label, None, _describe(v), f"expected {want}, got {_describe(v)}")
            kids = node.children if node.kind is NodeKind.TUPLE else node.children * len(v)
            for i, (item, kid) in enumerate(zip(v, kids)):
                f = self.walk(kid, item, f"{label}[{i}]", top)
                if f is not None:
                    return f
            return None
        if node.kind is NodeKind.UNION:
            failures = []
            for kid in node.children:
                env, where, source, pending = (list(self.env), list(self.where), list(self.source),
                                               list(self.pending))
                f = self.walk(kid, v, label, top)
                if f is None:
                    f = self.resolve(final=False)
                if f is None:
                    return None
                failures.append(f)
                self.env, self.where, self.source, self.pending = env, where, source, pending
            first = failures[0]
            first.detail = "fits none of the union's members; first: " + first.detail
            return first
        assert node.plain is not None
        reason = node.plain.reason(v)
        if reason is None:
            return None
        return _Failure(label, None, show_value(v), reason, expected=node.plain.label,
                        fix=node.plain.fix(v, label))

    def _array(self, spec: ArraySpec, v: Any, label: str, top: str) -> _Failure | None:
        is_tensor = spec.array_type is torch.Tensor
        type_ok = isinstance(v, torch.Tensor) if is_tensor else (
            hasattr(v, "shape") and hasattr(v, "dtype") if spec.array_type is Any
            else isinstance(v, spec.array_type))
        if not type_ok:
            kind = "Tensor" if is_tensor else getattr(spec.array_type, "__name__", str(spec.array_type))
            return _Failure(label, spec, _describe(v), f"expected a {kind}, got {_describe(v)}")
        if spec.dtype_names is not None and not dtype_matches(dtype_name(v.dtype), spec.dtype_names):
            family = spec.label.split("[", 1)[0]
            return _Failure(label, spec, tuple(v.shape),
                            f"dtype {dtype_name(v.dtype)} is not a {family} dtype ({_some(spec.dtype_names)})")
        shape = tuple(int(s) for s in v.shape)
        n = len(spec.dims)
        if spec.variadic is None and len(shape) != n:
            return _Failure(label, spec, shape, f"expected {n} dims, received a {len(shape)}-dim tensor")
        if spec.variadic is not None and len(shape) < n - 1:
            return _Failure(label, spec, shape, f"expected at least {n - 1} dims, received a "
                                                f"{len(shape)}-dim tensor")
        for i, d in enumerate(spec.dims):
            where = f"`{label}` dim {i}"
            if d.kind in (DimKind.ANON, DimKind.VAR_ANON):
                continue
            if d.kind is DimKind.VAR_NAMED:
                end = len(shape) - (n - 1 - i)
                part = shape[i:end]
                before = self.env[d.slot]
                if not bind_variadic(self.env, d.slot, d.bcast, part):
                    return self._disagree(label, spec, shape, d, format_shape(part),
                                          format_shape(before[1]), d.slot)
                if before is None:
                    self.where[d.slot], self.source[d.slot] = f"`{label}` dims {i}:{end}", top
                continue
            s = shape[spec.position(i)]
            if d.bcast and s == 1:
                continue
            if d.kind is DimKind.FIXED:
                if s != d.size:
                    return _Failure(label, spec, shape, f"dim {i} ({d.text}) is {s}, "
                                                        f"but the annotation fixes it to {d.size}", d)
            elif d.kind is DimKind.NAMED:
                b = self.env[d.slot]
                if b is None:
                    self.env[d.slot], self.where[d.slot], self.source[d.slot] = s, where, top
                elif b != s:
                    return self._disagree(label, spec, shape, d, str(s), str(b), d.slot, i)
            else:
                self.pending.append((s, d.terms, d, label, spec, shape))
        return None

    def _disagree(self, label: str, spec: ArraySpec, shape: tuple[int, ...], d: Dim, got: str, bound: str,
                  slot: int, i: int | None = None) -> _Failure:
        at = f"dim {i} ({d.name})" if i is not None else f"dims *{d.name}"
        return _Failure(label, spec, shape,
                        f"{at} is {got}, but {d.name}={bound} was bound by {self.where[slot]}",
                        d, self.source[slot])

    def resolve(self, final: bool) -> _Failure | None:
        """Decide the queued symbolic dims (the fast path's solver), saying what they contradict."""
        conflict = resolve(self.pending, self.env, final, self._solved)
        if conflict is None:
            return None
        (size, _, d, label, spec, shape), other = conflict
        if other is not None:
            return _Failure(label, spec, shape, f"dim {spec.dims.index(d)} ({d.name}) is {size} here "
                            f"but {other[0]} in `{other[3]}`", d, other[3].split("[")[0])
        bound = [s for _, slots in d.terms for s in slots if self.env[s] is not None]
        known = ", ".join(f"{self.names[s]}={self.env[s]} ({self.where[s]})" for s in bound)
        source = next((self.source[s] for s in bound if self.source[s]), "")
        return _Failure(label, spec, shape, f"dim {spec.dims.index(d)} ({d.name}) is {size}, which does not fit "
                        f"{known or 'the other sizes'}", d, source)

    def _solved(self, item: tuple[Any, ...], slots: list[int]) -> None:
        size, _, d, label = item[:4]
        for s in slots:
            self.where[s] = f"solved from {d.name}={size} in `{label}`"
            self.source[s] = label.split("[")[0]


def _describe(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"Tensor{format_shape(tuple(v.shape))} {dtype_name(v.dtype)}"
    return type(v).__name__


def _run_walker(sig: Signature, values: Sequence[Any], seeds: Sequence[Seed],
                result: Any, has_result: bool) -> tuple[_Walker, _Failure | None]:
    w = _Walker(sig, seeds)
    defaults = sig.defaults or (NO_DEFAULT,) * len(sig.names)
    for name, node, v, default in zip(sig.names, sig.nodes, values, defaults):
        if node is not None and node.kind is NodeKind.TYPE and v is default:
            continue  # a parameter left at its default object is not checked (as on the fast path)
        f = w.walk(node, v, name, name)
        if f is not None:
            return w, f
    f = w.resolve(final=sig.result is None or not has_result)
    if f is not None or not has_result:
        return w, f
    f = w.walk(sig.result, result, "return value", "return value")
    return w, f if f is not None else w.resolve(final=True)


def _swap_fix(sig: Signature, values: Sequence[Any], seeds: Sequence[Seed],
              candidates: Sequence[str]) -> tuple[str, int, int, _Walker] | None:
    """A transpose of one candidate argument after which every argument fits, if there is one
    (with the walk that fits: its bindings are what the arguments agree on)."""
    for name in candidates:
        if name not in sig.names:
            continue
        k = sig.names.index(name)
        v = values[k]
        if not isinstance(v, torch.Tensor) or v.dim() < 2:
            continue
        pairs = [(0, 1)] + [(i, j) for i in range(v.dim()) for j in range(i + 1, v.dim()) if (i, j) != (0, 1)]
        for i, j in pairs:
            if v.shape[i] == v.shape[j]:
                continue
            trial = list(values)
            trial[k] = v.transpose(i, j)
            fitted, failure = _run_walker(sig, trial, seeds, None, False)
            if failure is None:
                return name, i, j, fitted
    return None


def explain_mismatch(sig: Signature, label: str, values: Sequence[Any] | None, seeds: Sequence[Seed],
                     result: Any = None, has_result: bool = False) -> ShapeError:
    """The :class:`ShapeError` for a call the fast path rejected (the slow path, only on failure)."""
    if values is None:
        return ShapeError(module=label, argument="(call)", expected=str(sig.sig), actual="does not bind",
                          code="annotation", detail="the arguments do not bind to the signature")
    walker, failure = _run_walker(sig, values, seeds, result, has_result)
    if failure is None:  # the fast path and the walk disagree: say so rather than pass silently
        failure = _sampled(sig) or _Failure("(call)", None, None, "the values do not fit the annotations")
    code = "annotation"
    hints: list[str] = []
    argument = failure.argument
    detail = failure.detail
    spec = failure.spec
    actual = failure.actual
    fitted: _Walker | None = None
    if failure.dim is not None and not has_result:
        top = argument.split("[")[0]
        candidates = [c for c in (failure.bound_by, top) if c]
        fix = _swap_fix(sig, values, seeds, candidates)
        if fix is not None:
            name, i, j, fitted = fix
            code = "batch_first_swap"
            k = sig.names.index(name)
            node = sig.nodes[k]
            culprit_spec = node.array if node is not None else None
            dims = culprit_spec.dims if culprit_spec is not None else ()
            pair = (dims[i].text, dims[j].text) if len(dims) > max(i, j) else (str(i), str(j))
            shown = tuple(int(s) for s in values[k].shape)
            detail = (f"`{name}` looks laid out with {pair[0]} and {pair[1]} swapped: as given it binds "
                      f"{pair[0]}={shown[i]}, {pair[1]}={shown[j]}, and then `{argument}` disagrees "
                      f"({failure.detail}); with {name}.transpose({i}, {j}) every argument fits")
            hints.append(f"pass {name}.transpose({i}, {j}) (a batch-first tensor to a seq-first "
                         "annotation, or the reverse)")
            hints.append(f"or, if the function really takes that layout, annotate `{name}` with "
                         f"{pair[1]} and {pair[0]} swapped")
            argument, spec, actual = name, culprit_spec, shown
    if not hints:
        hints.extend([failure.fix] if failure.fix else _hints(failure))
    if failure.expected:
        expected = failure.expected
    elif fitted is not None and spec is not None:
        expected = _expected(spec, fitted)  # the sizes the other arguments agree on
    elif spec is not None:
        expected = _expected(spec, walker)
    else:
        expected = failure.dim.name if failure.dim is not None else "the annotation"
    return ShapeError(module=label, argument=argument, expected=expected,
                      actual=actual if isinstance(actual, (tuple, str)) or actual is None else str(actual),
                      code=code, hints=hints, detail=detail, context=[walker.bindings()])


def _sampled(sig: Signature) -> _Failure | None:
    """The failure to report when beartype rejected a container on the call but not on the walk's re-checks."""
    names = [name for name, node in zip(sig.names, sig.nodes) if has_probe(node)]
    if sig.result is not None and has_probe(sig.result):
        names.append("return value")
    if not names:
        return None
    shown = ", ".join(f"`{n}`" for n in names)
    return _Failure(names[0] if len(names) == 1 else "(call)", None, None,
                    f"beartype rejected {shown} on the call but let it through {RETRIES} re-checks: it checks "
                    "one random item of a container per call, so one item (or a few) does not fit",
                    expected="the annotation",
                    fix=f"look for the item of {shown} that does not fit its annotation")


def _expected(spec: ArraySpec, walker: _Walker) -> str:
    parts = []
    for d in spec.dims:
        value = walker.env[d.slot] if d.slot >= 0 else None
        if d.kind is DimKind.NAMED and value is not None:
            parts.append(f"{d.text}={value}")
        elif d.kind is DimKind.FIXED:
            parts.append(str(d.size))
        elif d.kind is DimKind.SYMBOLIC:
            verdict = evaluate(d.terms, walker.env)
            parts.append(d.text if verdict is None else f"{d.text}={verdict}")
        else:
            parts.append(d.text)
    return f"{spec.label} = ({', '.join(parts)})"


_CONVERSIONS = {"Int": "long", "Integer": "long", "UInt": "byte", "Float": "float", "Bool": "bool",
                "Complex": "cfloat", "Inexact": "float", "Real": "float", "Num": "float", "Float16": "half",
                "BFloat16": "bfloat16", "Float32": "float", "Float64": "double", "Int8": "char", "Int16": "short",
                "Int32": "int", "Int64": "long", "UInt8": "byte", "Complex64": "cfloat", "Complex128": "cdouble"}
"""jaxtyping's dtype annotations -> the tensor method that converts to one of their dtypes."""


def _conversion(detail: str) -> str:
    """The conversion a dtype failure asks for, from its detail (``"... is not a Int dtype ..."``).

    >>> _conversion("dtype float32 is not a Int dtype (int8, int64)"), _conversion("is not a Float dtype")
    ('long', 'float')
    """
    kind = detail.split(" is not a ", 1)[-1].split(" ", 1)[0]
    return _CONVERSIONS.get(kind, "float")


def _hints(f: _Failure) -> list[str]:
    d = f.dim
    if d is None:
        if "dims, received" in f.detail:
            return ["check the tensor's rank: unsqueeze(...)/squeeze(...) or reshape to the annotated dims"]
        if "dtype" in f.detail:
            return [f"convert it, e.g. {f.argument.split('[')[0]}.{_conversion(f.detail)}(), or widen the "
                    "annotation (Shaped[...] accepts any dtype)"]
        return ["pass a value of the annotated type"]
    if d.kind is DimKind.SYMBOLIC:
        return [f"{d.name} must equal the product/sum of the sizes bound elsewhere; check which factor "
                "is off (e.g. num_layers or bidirectional for layers*D)"]
    if f.bound_by and f.bound_by != f.argument.split("[")[0]:
        return [f"`{f.bound_by}` and `{f.argument}` disagree on {d.name}: one of them has the wrong size "
                "(or the annotation uses one name for two different dims)"]
    return [f"give `{f.argument}` the size the annotation names, or fix the annotation"]


_COMPILED_FAILURE = ("a @sv.check shape check failed while compiling; run the model eagerly (or without "
                     "fullgraph=True) to see the ShapeError")


run_eagerly: Callable[..., ShapeError]  # see __getattr__: made on first use


def _explain(fn: Callable[..., ShapeError], *args: Any) -> ShapeError:
    return fn(*args)


def __getattr__(name: str) -> Any:
    """``run_eagerly(fn, *args)``: ``fn(*args)`` under ``torch.compiler.disable``, so that inside
    torch.compile the slow path runs eagerly (a graph break, on failure only; under
    ``fullgraph=True`` an error that says why).

    Made on first use, not at import or decoration: ``torch.compiler.disable`` imports
    ``torch._dynamo`` (+1.5 s). Dynamo reads a module's attributes for real while it traces, so
    the traced call already meets the disabled function.
    """
    if name == "run_eagerly":
        fn = torch.compiler.disable(_explain, reason=_COMPILED_FAILURE)
        globals()[name] = fn
        return fn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _some(names: tuple) -> str:
    """The dtypes an annotation admits, the plainest first (``float16, float32, float64, bfloat16, …``).

    >>> _some(("float8_e5m2", "float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float4_e2m1fn_x2"))
    'float16, float32, float64, bfloat16, float8_e5m2, float8_e4m3fn, …'
    """
    shown = sorted((str(d) for d in names), key=lambda d: (len(d), d))
    return ", ".join(shown[:6]) + (", …" if len(shown) > 6 else "")
