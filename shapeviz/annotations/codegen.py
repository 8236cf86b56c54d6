"""The fast path of ``@check``: straight-line checkers generated from parsed annotations.

>>> import torch
>>> from jaxtyping import Float
>>> from torch import Tensor
>>> from shapeviz.annotations.parser import Slots, parse_annotation
>>> node = parse_annotation(Float[Tensor, "bs h"], Slots(), "example")
>>> ok = make_checker(node)
>>> env = [None, None]
>>> ok(torch.zeros(3, 20), env, []), env          # binds bs=3, h=20
(True, [3, 20])
>>> ok(torch.zeros(4, 20), env, [])               # bs=4 disagrees
False

The generated source holds only names made here (``v1``, ``s2``, ``env``, ``DT3`` …), slot
indices and integer sizes (parsed with ``int``), never text from an annotation: nothing the
user wrote is evaluated. Objects (dtype sets, symbolic terms, nested checkers, classes and
literals of non-array hints, beartype probes) go in through the namespace. A checker compares
``.shape`` entries with plain ints in a per-call list, so nothing is shared between calls or
threads and ``torch.compile`` can trace it. It says only yes or no;
:mod:`shapeviz.annotations.explainer` says why.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch

from shapeviz.annotations.parser import AnnotationNode, ArraySpec, DimKind, NodeKind, dtype_matches, dtype_name
from shapeviz.annotations.pytypes import PlainCheck, literal_ok, violation_type
from shapeviz.annotations.solver import bind_variadic, resolve

__all__ = ["NO_DEFAULT", "ArgsChecker", "Checker", "has_probe", "make_args_checker", "make_checker"]

NO_DEFAULT: Any = inspect.Parameter.empty
"""A parameter without a default (in ``make_args_checker``'s ``defaults``)."""

Checker = Callable[[Any, list[Any], list[Any]], bool]
"""``checker(value, env, pending) -> bool``: binds names in ``env``, queues symbolic dims."""

ArgsChecker = Callable[[Sequence[Any], list[Any], list[Any]], bool]
"""``checker(values, env, pending) -> bool`` over all the arguments, in parameter order."""


def _generic_type_ok(v: Any, cls: Any, names: Sequence[str | re.Pattern[str]] | None) -> bool:
    if cls is Any:
        if not (hasattr(v, "shape") and hasattr(v, "dtype")):
            return False
    elif not isinstance(v, cls):
        return False
    return names is None or dtype_matches(dtype_name(v.dtype), names)


def _union_ok(v: Any, env: list[Any], pending: list[Any], members: tuple[Checker, ...]) -> bool:
    """The first member that fits (with the symbolic dims it queued deciding so far) wins."""
    for member in members:
        trial, trial_pending = list(env), list(pending)
        if member(v, trial, trial_pending) and resolve(trial_pending, trial, False) is None:
            env[:] = trial
            pending[:] = trial_pending
            return True
    return False


class _Gen:
    """Writes the source of one checker: a walk over the parsed annotation tree."""

    def __init__(self, probes: bool = True) -> None:
        self.probes = probes  # False: hints only a beartype probe can check are left out (under dynamo)
        self.lines: list[str] = []
        self.ns: dict[str, Any] = {"Tensor": torch.Tensor, "bind_variadic": bind_variadic,
                                   "generic_ok": _generic_type_ok, "union_ok": _union_ok, "literal_ok": literal_ok}
        self.n = 0

    def fresh(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def const(self, prefix: str, value: Any) -> str:
        name = self.fresh(prefix)
        self.ns[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def fail_unless(self, indent: int, cond: str) -> None:
        self.emit(indent, f"if not {cond}:")
        self.emit(indent + 1, "return False")

    def node(self, node: AnnotationNode, var: str, indent: int, known: set[int]) -> None:
        """Emit the check of ``var`` against ``node``; ``known``: slots surely bound by now."""
        kind = node.kind
        if kind is NodeKind.ARRAY:
            assert node.array is not None
            self.array(node.array, var, indent, known)
        elif kind is NodeKind.OPTIONAL:
            child = node.children[0]
            assert child is not None
            self.emit(indent, f"if {var} is not None:")
            self.node(child, var, indent + 1, set(known))
        elif kind is NodeKind.TUPLE:
            self.fail_unless(indent, f"(isinstance({var}, tuple) and len({var}) == {len(node.children)})")
            for i, child in enumerate(node.children):
                if child is not None:
                    item = self.fresh("v")
                    self.emit(indent, f"{item} = {var}[{i}]")
                    self.node(child, item, indent, known)
        elif kind in (NodeKind.VARTUPLE, NodeKind.VARDICT):
            child = node.children[0]
            assert child is not None
            each, item = self.const("K", make_checker(child, self.probes)), self.fresh("v")
            if kind is NodeKind.VARTUPLE:
                self.fail_unless(indent, f"isinstance({var}, tuple)")
                self.emit(indent, f"for {item} in {var}:")
            else:
                self.fail_unless(indent, f"isinstance({var}, dict)")
                self.emit(indent, f"for {item} in {var}.values():")
            self.fail_unless(indent + 1, f"{each}({item}, env, pending)")
        elif kind is NodeKind.UNION:
            members = tuple(make_checker(c, self.probes) for c in node.children if c is not None)
            self.fail_unless(indent, f"union_ok({var}, env, pending, {self.const('U', members)})")
        else:
            assert node.plain is not None
            self.plain(node.plain, var, indent)

    def plain(self, check: PlainCheck, var: str, indent: int) -> None:
        """A non-array hint: inline for classes and literals, else a call of its beartype probe."""
        if check.probe is not None and not self.probes:
            self.emit(indent, "pass")
        elif check.probe is not None:
            self.ns["Violation"] = violation_type()
            self.emit(indent, "try:")
            self.emit(indent + 1, f"{self.const('P', check.probe)}({var})")
            self.emit(indent, "except Violation:")
            self.emit(indent + 1, "return False")
        elif check.classes == (type(None),) and not check.literals:
            self.fail_unless(indent, f"{var} is None")
        else:
            parts = []
            if check.classes:
                classes = check.classes[0] if len(check.classes) == 1 else check.classes
                parts.append(f"isinstance({var}, {self.const('TY', classes)})")
            if check.literals:
                parts.append(f"literal_ok({var}, {self.const('LIT', check.literals)})")
            self.fail_unless(indent, f"({' or '.join(parts)})")

    def array(self, spec: ArraySpec, v: str, indent: int, known: set[int]) -> None:
        if spec.array_type is torch.Tensor:
            cond = f"not isinstance({v}, Tensor)"
            if spec.dtypes is not None:
                cond += f" or {v}.dtype not in {self.const('DT', frozenset(spec.dtypes))}"
        else:
            ty = self.const("TY", (spec.array_type, spec.dtype_names))
            cond = f"not generic_ok({v}, {ty}[0], {ty}[1])"
        s = self.fresh("s")
        ndim = len(spec.dims)
        self.emit(indent, f"if {cond}:")
        self.emit(indent + 1, "return False")
        self.emit(indent, f"{s} = {v}.shape")
        if spec.variadic is None:
            self.emit(indent, f"if len({s}) != {ndim}:")
        else:
            self.emit(indent, f"if len({s}) < {ndim - 1}:")
        self.emit(indent + 1, "return False")
        for i, d in enumerate(spec.dims):
            pos = spec.position(i)
            if d.kind is DimKind.FIXED:
                extra = f" and {s}[{pos}] != 1" if d.bcast else ""
                self.emit(indent, f"if {s}[{pos}] != {int(d.size)}{extra}:")
                self.emit(indent + 1, "return False")
            elif d.kind is DimKind.NAMED and not d.bcast and d.slot in known:
                self.emit(indent, f"if {s}[{pos}] != env[{int(d.slot)}]:")
                self.emit(indent + 1, "return False")
            elif d.kind is DimKind.NAMED:
                x = self.fresh("x")
                self.emit(indent, f"{x} = {s}[{pos}]")
                inner = indent
                if d.bcast:
                    self.emit(indent, f"if {x} != 1:")
                    inner += 1
                else:
                    known.add(d.slot)
                self.emit(inner, f"if env[{int(d.slot)}] is None:")
                self.emit(inner + 1, f"env[{int(d.slot)}] = {x}")
                self.emit(inner, f"elif env[{int(d.slot)}] != {x}:")
                self.emit(inner + 1, "return False")
            elif d.kind is DimKind.SYMBOLIC:
                terms = self.const("SYM", d.terms)
                if d.bcast:
                    self.emit(indent, f"if {s}[{pos}] != 1:")
                    self.emit(indent + 1, f"pending.append(({s}[{pos}], {terms}))")
                else:
                    self.emit(indent, f"pending.append(({s}[{pos}], {terms}))")
            elif d.kind is DimKind.VAR_NAMED:
                end = int(i - ndim + 1)
                stop = f"len({s}) + {end}" if end else f"len({s})"
                self.emit(indent, f"if not bind_variadic(env, {int(d.slot)}, {bool(d.bcast)}, "
                                  f"tuple({s}[{i}:{stop}])):")
                self.emit(indent + 1, "return False")

    def build(self, name: str, params: str) -> Any:
        src = f"def {name}({params}):\n" + "\n".join("    " + ln for ln in self.lines) + "\n    return True\n"
        code = compile(src, f"<shapeviz.annotations.codegen {name}>", "exec")
        exec(code, self.ns)  # generated source only: see the module docstring
        fn = self.ns[name]
        fn.__shapeviz_source__ = src
        return fn


def has_probe(node: AnnotationNode | None) -> bool:
    """Whether a hint in ``node`` is checked by a beartype probe (not inline)."""
    if node is None:
        return False
    return (node.plain is not None and node.plain.probe is not None) or any(has_probe(c) for c in node.children)


def make_checker(node: AnnotationNode, probes: bool = True) -> Checker:
    """The generated checker of one parsed annotation (a return value, a union member …).

    ``probes=False`` leaves out the hints only a beartype probe checks (``list[int]`` …): the
    variant run while dynamo traces, which cannot trace beartype's random sampling of a container.
    """
    gen = _Gen(probes)
    gen.node(node, "v", 0, set())
    return cast(Checker, gen.build("check_value", "v, env, pending"))


def make_args_checker(nodes: Sequence[AnnotationNode | None], defaults: Sequence[Any] = (),
                      probes: bool = True) -> ArgsChecker:
    """One straight-line checker for all the arguments, in order (None: an unchecked parameter).

    ``defaults[i]``, where given, is parameter ``i``'s default: a non-array parameter whose value is
    that very object is not checked (beartype does not check a default on a call either).
    ``probes``: as for :func:`make_checker`.
    """
    gen = _Gen(probes)
    known: set[int] = set()
    for i, node in enumerate(nodes):
        if node is not None:
            v = gen.fresh("v")
            gen.emit(0, f"{v} = values[{i}]")
            if node.kind is NodeKind.TYPE and i < len(defaults) and defaults[i] is not NO_DEFAULT:
                gen.emit(0, f"if {v} is not {gen.const('D', defaults[i])}:")
                gen.node(node, v, 1, known)
            else:
                gen.node(node, v, 0, known)
    return cast(ArgsChecker, gen.build("check_args", "values, env, pending"))
