"""Compiled checkers for jaxtyping-annotated signatures (the engine behind ``sv.check``).

>>> import torch
>>> from jaxtyping import Float
>>> from torch import Tensor
>>> sig = compile_signature(lambda x, h: h, {"x": Float[Tensor, "T bs emb"], "h": Float[Tensor, "bs h"]})
>>> sig.names, sig.slots["bs"]
(('x', 'h'), 1)

A signature is compiled once: its dim names become integer slots, and its annotations become
two straight-line Python functions (``Signature.args_check``, ``Signature.result_check``) whose
source holds only names made here, slot numbers and integer sizes, never text from an
annotation. They compare ``.shape`` entries with plain ints in a per-call list, so nothing is
shared between calls or threads and ``torch.compile`` can trace them. Only when they say "no"
does :func:`diagnose` walk the compiled specs again, slowly, remembering where each dim was
bound, and build the :class:`~shapeviz._errors.ShapeError`.

Dim strings are parsed here, never evaluated: symbolic dims are sums and differences of
products of names and integers (``layers*D``, ``T*bs``, ``n+1``).
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union, cast

import torch
from jaxtyping import AbstractArray

from shapeviz._errors import ShapeError, SpecError
from shapeviz.core.dimensions import format_shape

# ------------------------------------------------------------------ parsed dims

ANON, FIXED, NAMED, SYMBOLIC, VAR_ANON, VAR_NAMED = range(6)
_TERM = re.compile(r"[+-]?[^+-]+")
_INT = re.compile(r"[0-9]+\Z")


@dataclass(frozen=True)
class Dim:
    """One token of a dim string: its kind, the text as written, and what it refers to."""

    kind: int
    text: str
    bcast: bool = False
    size: int = 0  # FIXED
    slot: int = -1  # NAMED / VAR_NAMED
    name: str = ""  # NAMED / VAR_NAMED / SYMBOLIC (the expression)
    terms: tuple[tuple[int, tuple[int, ...]], ...] = ()  # SYMBOLIC: sum of coef * prod(slots)


@dataclass(frozen=True)
class ArraySpec:
    """A compiled ``Float[Tensor, "T bs emb"]``: type, allowed dtypes and dims."""

    label: str  # e.g. Float[Tensor, 'T bs emb']
    array_type: Any
    dtypes: tuple[torch.dtype, ...] | None  # None: any dtype
    dtype_names: tuple[str | re.Pattern[str], ...] | None
    dims: tuple[Dim, ...]
    variadic: int | None  # index of the *name / ... dim

    @property
    def min_ndim(self) -> int:
        return len(self.dims) - (self.variadic is not None)

    def position(self, i: int) -> int:
        """Index into ``.shape`` of dim ``i`` (negative after a variadic dim)."""
        if self.variadic is None or i < self.variadic:
            return i
        return i - len(self.dims)


@dataclass(frozen=True)
class Node:
    """A compiled annotation: an array, an optional, a tuple, a homogeneous tuple or a union."""

    kind: str  # "array" | "optional" | "tuple" | "vartuple" | "union" | "type"
    array: ArraySpec | None = None
    children: tuple[Node | None, ...] = ()
    pytype: Any = None  # for "type": a plain class checked with isinstance


def _all_torch_dtypes() -> tuple[torch.dtype, ...]:
    seen: dict[torch.dtype, None] = {}
    for value in vars(torch).values():
        if isinstance(value, torch.dtype):
            seen[value] = None
    return tuple(seen)


_TORCH_DTYPES = _all_torch_dtypes()


def dtype_name(dtype: Any) -> str:
    """The dtype name jaxtyping compares against: ``torch.float32`` -> ``"float32"``."""
    if hasattr(dtype, "type") and hasattr(dtype.type, "__name__"):
        return str(dtype.type.__name__)
    if isinstance(dtype, str):
        return dtype
    return repr(dtype).rsplit(".", 1)[-1]


def _dtype_matches(name: str, wanted: Sequence[str | re.Pattern[str]]) -> bool:
    return any((w == name) if isinstance(w, str) else bool(w.match(name)) for w in wanted)


class _Slots:
    """Names used by a signature, each mapped to an index into the per-call bindings list."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.variadic: set[str] = set()

    def get(self, name: str, variadic: bool, where: str) -> int:
        if name in self.index and (name in self.variadic) != variadic:
            raise SpecError(f"{where}: {name!r} is used both as a single dim and as a variadic "
                            f"`*{name}`; give them different names")
        if variadic:
            self.variadic.add(name)
        return self.index.setdefault(name, len(self.index))


def _parse_symbolic(expr: str, slots: _Slots, where: str) -> tuple[tuple[int, tuple[int, ...]], ...]:
    bad = SpecError(
        f"{where}: symbolic dim {expr!r} is not understood; sv.check reads sums, differences and "
        "products of dim names and integers (e.g. layers*D, T*bs, n+1) and never evaluates code")
    if "".join(_TERM.findall(expr)) != expr:
        raise bad
    terms = []
    for term in _TERM.findall(expr):
        sign = -1 if term.startswith("-") else 1
        coef, names = sign, []
        for factor in term.lstrip("+-").split("*"):
            if _INT.match(factor):
                coef *= int(factor)
            elif factor.isidentifier():
                names.append(slots.get(factor, False, where))
            else:
                raise bad
        terms.append((coef, tuple(names)))
    return tuple(terms)


def parse_dims(dim_str: str, slots: _Slots, where: str) -> tuple[tuple[Dim, ...], int | None]:
    """Parse a jaxtyping dim string the way jaxtyping reads it, into :class:`Dim` tokens."""
    dims: list[Dim] = []
    variadic_at: int | None = None
    for i, token in enumerate(dim_str.split()):
        elem, bcast, star, anon = token, False, False, False
        if elem == "...":
            star, anon = True, True
            elem = ""
        while elem:
            if elem[0] == "#":
                bcast, elem = True, elem[1:]
            elif elem[0] == "*":
                star, elem = True, elem[1:]
            elif elem[0] == "_":
                anon, elem = True, elem[1:]
            elif elem[0] == "?":
                raise SpecError(f"{where}: tree-path dims such as {token!r} are for PyTrees; "
                                "sv.check does not support them")
            elif elem.count("=") == 1:
                elem = elem.split("=")[1]
            else:
                break
        if star:
            if variadic_at is not None:
                raise SpecError(f"{where}: only one variadic dim (*name or ...) per annotation")
            variadic_at = i
            if anon:
                dims.append(Dim(VAR_ANON, token))
            else:
                dims.append(Dim(VAR_NAMED, token, bcast, slot=slots.get(elem, True, where), name=elem))
        elif anon or not elem:
            dims.append(Dim(ANON, token))
        elif elem.isidentifier():
            dims.append(Dim(NAMED, token, bcast, slot=slots.get(elem, False, where), name=elem))
        elif _INT.match(elem):
            dims.append(Dim(FIXED, token, bcast, size=int(elem)))
        else:
            dims.append(Dim(SYMBOLIC, token, bcast, name=elem, terms=_parse_symbolic(elem, slots, where)))
    return tuple(dims), variadic_at


@functools.lru_cache(maxsize=256)
def _torch_dtypes_for(names: tuple[str | re.Pattern[str], ...]) -> tuple[torch.dtype, ...]:
    """The torch dtypes whose jaxtyping name is one of ``names`` (once per dtype family)."""
    return tuple(d for d in _TORCH_DTYPES if _dtype_matches(dtype_name(d), names))


def _is_array_annotation(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, AbstractArray) and tp is not AbstractArray


def _compile_array(tp: Any, slots: _Slots, where: str) -> ArraySpec:
    dims, variadic = parse_dims(tp.dim_str, slots, where)
    names = tp.dtypes if isinstance(tp.dtypes, (list, tuple)) else None
    dtypes = _torch_dtypes_for(tuple(names)) if names is not None else None
    return ArraySpec(tp.__name__, tp.array_type, dtypes, tuple(names) if names is not None else None,
                     dims, variadic)


def compile_node(tp: Any, slots: _Slots, where: str) -> Node | None:
    """Compile one annotation; None when it holds no array annotation (left unchecked)."""
    if _is_array_annotation(tp):
        return Node("array", array=_compile_array(tp, slots, where))
    if isinstance(tp, type) and tp.__module__ == "jaxtyping" and hasattr(tp, "dtypes"):
        raise SpecError(f"{where}: {tp.__name__} needs an array type and dims, "
                        f"e.g. {tp.__name__}[Tensor, \"bs T\"]")
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return compile_node(args[0], slots, where)
    if origin is Union or origin is types.UnionType:
        others = [a for a in args if a is not type(None)]
        children = tuple(compile_node(a, slots, where) for a in others)
        if all(c is None for c in children):
            return None
        if len(others) == 1:
            return Node("optional", children=children)
        kids = tuple(c if c is not None else Node("type", pytype=_plain(a)) for c, a in zip(children, others))
        node = Node("union", children=kids)
        return Node("optional", children=(node,)) if len(others) < len(args) else node
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            child = compile_node(args[0], slots, where)
            return None if child is None else Node("vartuple", children=(child,))
        children = tuple(compile_node(a, slots, where) for a in args if a != ())
        if all(c is None for c in children):
            return None
        return Node("tuple", children=children)
    return None


def _plain(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(origin, type):
        return origin
    return tp if isinstance(tp, type) else object


# ------------------------------------------------------------------ fast path

def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + tuple(a)
    b = (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(out)


def bind_variadic(env: list[Any], slot: int, bcast: bool, new: tuple[int, ...]) -> bool:
    """Bind or compare a variadic ``*name`` (jaxtyping's rules, ``*#name`` broadcasting)."""
    prev = env[slot]
    if prev is None:
        env[slot] = (bcast, new)
        return True
    prev_bcast, prev_shape = prev
    if prev_bcast:
        shape = _broadcast(new, prev_shape)
        if shape is None or (not bcast and shape != new):
            return False
        env[slot] = (bcast, shape)
        return True
    if bcast:
        shape = _broadcast(new, prev_shape)
        return shape is not None and shape == prev_shape
    return new == prev_shape


def solve(size: int, terms: tuple[tuple[int, tuple[int, ...]], ...], env: list[Any]) -> int | None:
    """Check ``size`` against a symbolic dim: 1 fits, 0 contradicts, None not yet decidable.

    With exactly one unknown name (appearing once) it is solved and bound in ``env``.
    """
    total = 0
    unknown: tuple[int, int] | None = None
    for coef, slots in terms:
        p, missing = coef, -1
        for s in slots:
            b = env[s]
            if b is None:
                if missing >= 0:
                    return None
                missing = s
            else:
                p *= b
        if missing < 0:
            total += p
        elif unknown is None:
            unknown = (p, missing)
        else:
            return None
    if unknown is None:
        return 1 if total == size else 0
    p, slot = unknown
    if p == 0:
        return None
    q, r = divmod(size - total, p)
    if r or q < 0:
        return 0
    env[slot] = q
    return 1


def resolve(pending: list[Any], env: list[Any], final: bool) -> bool:
    """Check the symbolic dims collected so far; with ``final``, undecidable ones must agree."""
    progress = True
    while pending and progress:
        progress = False
        for item in list(pending):
            verdict = solve(item[0], item[1], env)
            if verdict is None:
                continue
            if verdict == 0:
                return False
            pending.remove(item)
            progress = True
    if final and pending:
        seen: dict[Any, int] = {}
        for size, terms in pending:
            if seen.setdefault(terms, size) != size:
                return False
    return True


Check = Callable[[Any, list[Any], list[Any]], bool]


class _Gen:
    """Writes the straight-line source of a specialised checker.

    The source holds only names made here (``v0``, ``s0``, ``env``, ``DT0`` …), slot indices and
    integer sizes (parsed with ``int``), never text from an annotation: nothing the user wrote is
    evaluated. Objects (dtype sets, symbolic terms, nested checkers) go in through ``ns``.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ns: dict[str, Any] = {"Tensor": torch.Tensor, "bind_variadic": bind_variadic,
                                   "generic_ok": _generic_type_ok}
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

    def node(self, node: Node, var: str, indent: int, known: set[int]) -> None:
        if node.kind == "array":
            assert node.array is not None
            self.array(node.array, var, indent, known)
        elif node.kind == "optional" and node.children[0] is not None:
            self.emit(indent, f"if {var} is not None:")
            self.node(node.children[0], var, indent + 1, set(known))
        elif node.kind == "tuple":
            self.emit(indent, f"if not isinstance({var}, tuple) or len({var}) != {len(node.children)}:")
            self.emit(indent + 1, "return False")
            for i, child in enumerate(node.children):
                if child is not None:
                    item = self.fresh("v")
                    self.emit(indent, f"{item} = {var}[{i}]")
                    self.node(child, item, indent, known)
        else:
            k = self.const("K", make_check(node))
            self.emit(indent, f"if not {k}({var}, env, pending):")
            self.emit(indent + 1, "return False")

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
            if d.kind == FIXED:
                extra = f" and {s}[{pos}] != 1" if d.bcast else ""
                self.emit(indent, f"if {s}[{pos}] != {int(d.size)}{extra}:")
                self.emit(indent + 1, "return False")
            elif d.kind == NAMED and not d.bcast and d.slot in known:
                self.emit(indent, f"if {s}[{pos}] != env[{int(d.slot)}]:")
                self.emit(indent + 1, "return False")
            elif d.kind == NAMED:
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
            elif d.kind == SYMBOLIC:
                terms = self.const("SYM", d.terms)
                if d.bcast:
                    self.emit(indent, f"if {s}[{pos}] != 1:")
                    self.emit(indent + 1, f"pending.append(({s}[{pos}], {terms}))")
                else:
                    self.emit(indent, f"pending.append(({s}[{pos}], {terms}))")
            elif d.kind == VAR_NAMED:
                end = int(i - ndim + 1)
                stop = f"len({s}) + {end}" if end else f"len({s})"
                self.emit(indent, f"if not bind_variadic(env, {int(d.slot)}, {bool(d.bcast)}, "
                                  f"tuple({s}[{i}:{stop}])):")
                self.emit(indent + 1, "return False")

    def build(self, name: str, params: str) -> Any:
        src = f"def {name}({params}):\n" + "\n".join("    " + ln for ln in self.lines) + "\n    return True\n"
        code = compile(src, f"<shapeviz.runtime.fastcheck {name}>", "exec")
        exec(code, self.ns)  # generated source only: see the class docstring
        fn = self.ns[name]
        fn.__shapeviz_source__ = src
        return fn


def _make_array_check(spec: ArraySpec) -> Check:
    gen = _Gen()
    gen.array(spec, "v", 0, set())
    return cast(Check, gen.build("check_array", "v, env, pending"))


def make_args_check(nodes: Sequence[Node | None]) -> Callable[[Sequence[Any], list[Any], list[Any]], bool]:
    """One straight-line checker for all the arguments, in order."""
    gen = _Gen()
    known: set[int] = set()
    for i, node in enumerate(nodes):
        if node is not None:
            v = gen.fresh("v")
            gen.emit(0, f"{v} = values[{i}]")
            gen.node(node, v, 0, known)
    return cast(Callable[[Sequence[Any], list[Any], list[Any]], bool], gen.build("check_args", "values, env, pending"))


def make_result_check(node: Node) -> Check:
    """The straight-line checker of a return annotation."""
    gen = _Gen()
    gen.node(node, "v", 0, set())
    return cast(Check, gen.build("check_result", "v, env, pending"))


def _generic_type_ok(v: Any, cls: Any, names: Sequence[str | re.Pattern[str]] | None) -> bool:
    if cls is Any:
        if not (hasattr(v, "shape") and hasattr(v, "dtype")):
            return False
    elif not isinstance(v, cls):
        return False
    return names is None or _dtype_matches(dtype_name(v.dtype), names)


def make_check(node: Node) -> Check:
    """The fast checker of a compiled annotation: ``check(value, env, pending) -> bool``."""
    if node.kind == "array":
        assert node.array is not None
        return _make_array_check(node.array)
    kids = tuple(make_check(c) if c is not None else None for c in node.children)
    if node.kind == "optional":
        inner = kids[0]
        assert inner is not None

        def check_optional(v: Any, env: list[Any], pending: list[Any]) -> bool:
            return v is None or inner(v, env, pending)
        return check_optional
    if node.kind == "tuple":
        n = len(kids)

        def check_tuple(v: Any, env: list[Any], pending: list[Any]) -> bool:
            if not isinstance(v, tuple) or len(v) != n:
                return False
            return all(k is None or k(item, env, pending) for item, k in zip(v, kids))
        return check_tuple
    if node.kind == "vartuple":
        each = kids[0]
        assert each is not None

        def check_vartuple(v: Any, env: list[Any], pending: list[Any]) -> bool:
            if not isinstance(v, tuple):
                return False
            return all(each(item, env, pending) for item in v)
        return check_vartuple
    if node.kind == "union":
        def check_union(v: Any, env: list[Any], pending: list[Any]) -> bool:
            for k in kids:
                assert k is not None
                trial, trial_pending = list(env), list(pending)
                if k(v, trial, trial_pending) and resolve(trial_pending, trial, False):
                    env[:] = trial
                    pending[:] = trial_pending
                    return True
            return False
        return check_union
    pytype = node.pytype

    def check_type(v: Any, env: list[Any], pending: list[Any]) -> bool:
        return isinstance(v, pytype)
    return check_type


# ------------------------------------------------------------------ signatures

_EMPTY = inspect.Parameter.empty


@dataclass
class Signature:
    """A function's annotations compiled once: which parameters to check and how."""

    fn: Callable[..., Any]
    names: tuple[str, ...]  # parameter names, in order (var-positional/keyword excluded)
    nodes: tuple[Node | None, ...]
    result: Node | None
    slots: dict[str, int]
    has_sym: bool
    sig: inspect.Signature
    defaults_tail: tuple[Any, ...]  # defaults of the trailing parameters
    simple: bool  # only positional-or-keyword parameters
    args_check: Callable[[Sequence[Any], list[Any], list[Any]], bool] | None = None
    result_check: Check | None = None
    is_method: bool = False

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
        """Argument values in parameter order, or None if the call does not bind."""
        n = len(self.names)
        if not kwargs and self.simple:
            k = len(args)
            if k == n:
                return args
            if n - len(self.defaults_tail) <= k < n:
                return args + self.defaults_tail[k - n:]
            return None
        try:
            ba = self.sig.bind(*args, **kwargs)
        except TypeError:
            return None
        ba.apply_defaults()
        return tuple(ba.arguments.get(name) for name in self.names)


def compile_signature(fn: Callable[..., Any], hints: dict[str, Any] | None = None) -> Signature:
    """Compile ``fn``'s jaxtyping annotations (``hints`` overrides ``typing.get_type_hints``)."""
    where_fn = getattr(fn, "__qualname__", repr(fn))
    if hints is None:
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except NameError:
            raise  # a forward reference not defined yet: the caller may retry on the first call
        except Exception as e:
            raise SpecError(f"sv.check: cannot read the annotations of {where_fn}: {e}") from e
    sig = inspect.signature(fn)
    slots = _Slots()
    names, nodes = [], []
    simple = True
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY):
            simple = False
        tp = hints.get(p.name)
        where = f"{where_fn}, parameter `{p.name}`"
        node = compile_node(tp, slots, where) if tp is not None else None
        if p.kind == p.VAR_POSITIONAL and node is not None:
            node = Node("vartuple", children=(node,))
        elif p.kind == p.VAR_KEYWORD and node is not None:
            raise SpecError(f"{where}: sv.check does not check **kwargs annotations")
        names.append(p.name)
        nodes.append(node)
    result = compile_node(hints["return"], slots, f"{where_fn}, return value") if "return" in hints else None
    tail: list[Any] = []
    for p in reversed(list(sig.parameters.values())):
        if p.default is _EMPTY:
            break
        tail.insert(0, p.default)
    has_sym = any(_has_sym(n) for n in [*nodes, result])
    out = Signature(fn, tuple(names), tuple(nodes), result, dict(slots.index), has_sym, sig, tuple(tail),
                    simple, is_method=bool(names) and names[0] == "self")
    if any(n is not None for n in nodes):
        out.args_check = make_args_check(nodes)
    out.result_check = make_result_check(result) if result is not None else None
    return out


def _has_sym(node: Node | None) -> bool:
    if node is None:
        return False
    if node.array is not None:
        return any(d.kind == SYMBOLIC for d in node.array.dims)
    return any(_has_sym(c) for c in node.children)


# ------------------------------------------------------------------ slow path: diagnosis


@dataclass
class _Failure:
    argument: str
    spec: ArraySpec | None
    actual: Any
    detail: str
    dim: Dim | None = None
    bound_by: str = ""  # the argument that bound the disagreeing dim (first)


class _Walker:
    """Re-checks a call dim by dim, remembering where each size came from."""

    def __init__(self, sig: Signature, seeds: Sequence[tuple[str, int, str]]) -> None:
        self.sig = sig
        self.env: list[Any] = [None] * len(sig.slots)
        self.where: list[str] = [""] * len(sig.slots)
        self.source: list[str] = [""] * len(sig.slots)  # argument name (or "") that bound it
        self.pending: list[tuple[int, Dim, str, ArraySpec, tuple[int, ...]]] = []
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

    def walk(self, node: Node | None, v: Any, label: str, top: str) -> _Failure | None:
        if node is None:
            return None
        if node.kind == "array":
            assert node.array is not None
            return self._array(node.array, v, label, top)
        if node.kind == "optional":
            return None if v is None else self.walk(node.children[0], v, label, top)
        if node.kind in ("tuple", "vartuple"):
            n = len(node.children)
            if not isinstance(v, tuple) or (node.kind == "tuple" and len(v) != n):
                want = f"a tuple of {n}" if node.kind == "tuple" else "a tuple"
                return _Failure(label, None, _describe(v), f"expected {want}, got {_describe(v)}")
            kids = node.children if node.kind == "tuple" else node.children * len(v)
            for i, (item, kid) in enumerate(zip(v, kids)):
                f = self.walk(kid, item, f"{label}[{i}]", top)
                if f is not None:
                    return f
            return None
        if node.kind == "union":
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
        if not isinstance(v, node.pytype):
            return _Failure(label, None, _describe(v), f"expected {node.pytype.__name__}, got {_describe(v)}")
        return None

    def _array(self, spec: ArraySpec, v: Any, label: str, top: str) -> _Failure | None:
        is_tensor = spec.array_type is torch.Tensor
        type_ok = isinstance(v, torch.Tensor) if is_tensor else (
            hasattr(v, "shape") and hasattr(v, "dtype") if spec.array_type is Any
            else isinstance(v, spec.array_type))
        if not type_ok:
            kind = "Tensor" if is_tensor else getattr(spec.array_type, "__name__", str(spec.array_type))
            return _Failure(label, spec, _describe(v), f"expected a {kind}, got {_describe(v)}")
        if spec.dtype_names is not None and not _dtype_matches(dtype_name(v.dtype), spec.dtype_names):
            family = spec.label.split("[", 1)[0]
            return _Failure(label, spec, tuple(v.shape),
                            f"dtype {dtype_name(v.dtype)} is not a {family} dtype "
                            f"({', '.join(str(d) for d in spec.dtype_names[:6])})")
        shape = tuple(int(s) for s in v.shape)
        n = len(spec.dims)
        if spec.variadic is None and len(shape) != n:
            return _Failure(label, spec, shape, f"expected {n} dims, received a {len(shape)}-dim tensor")
        if spec.variadic is not None and len(shape) < n - 1:
            return _Failure(label, spec, shape, f"expected at least {n - 1} dims, received a "
                                                f"{len(shape)}-dim tensor")
        for i, d in enumerate(spec.dims):
            where = f"`{label}` dim {i}"
            if d.kind in (ANON, VAR_ANON):
                continue
            if d.kind == VAR_NAMED:
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
            if d.kind == FIXED:
                if s != d.size:
                    return _Failure(label, spec, shape, f"dim {i} ({d.text}) is {s}, "
                                                        f"but the annotation fixes it to {d.size}", d)
            elif d.kind == NAMED:
                b = self.env[d.slot]
                if b is None:
                    self.env[d.slot], self.where[d.slot], self.source[d.slot] = s, where, top
                elif b != s:
                    return self._disagree(label, spec, shape, d, str(s), str(b), d.slot, i)
            else:
                self.pending.append((s, d, label, spec, shape))
        return None

    def _disagree(self, label: str, spec: ArraySpec, shape: tuple[int, ...], d: Dim, got: str, bound: str,
                  slot: int, i: int | None = None) -> _Failure:
        at = f"dim {i} ({d.name})" if i is not None else f"dims *{d.name}"
        return _Failure(label, spec, shape,
                        f"{at} is {got}, but {d.name}={bound} was bound by {self.where[slot]}",
                        d, self.source[slot])

    def resolve(self, final: bool) -> _Failure | None:
        progress = True
        while self.pending and progress:
            progress = False
            for item in list(self.pending):
                size, d, label, spec, shape = item
                unknown = [s for _, slots in d.terms for s in slots if self.env[s] is None]
                verdict = solve(size, d.terms, self.env)
                if verdict is None:
                    continue
                self.pending.remove(item)
                progress = True
                if verdict == 0:
                    known = ", ".join(f"{self.names[s]}={self.env[s]} ({self.where[s]})"
                                      for _, slots in d.terms for s in slots if self.env[s] is not None)
                    sources = [self.source[s] for _, slots in d.terms for s in slots if self.env[s] is not None]
                    return _Failure(label, spec, shape, f"dim {spec.dims.index(d)} ({d.name}) is {size}, "
                                    "which does not fit "
                                    f"{known or 'the other sizes'}", d, next((s for s in sources if s), ""))
                for s in unknown:
                    self.where[s] = f"solved from {d.name}={size} in `{label}`"
                    self.source[s] = label.split("[")[0]
        if final:
            seen: dict[Any, tuple[int, str]] = {}
            for size, d, label, spec, shape in self.pending:
                prev = seen.setdefault(d.terms, (size, label))
                if prev[0] != size:
                    return _Failure(label, spec, shape, f"dim {spec.dims.index(d)} ({d.name}) is {size} here "
                                    f"but {prev[0]} in `{prev[1]}`",
                                    d, prev[1].split("[")[0])
        return None


def _describe(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"Tensor{format_shape(tuple(v.shape))} {dtype_name(v.dtype)}"
    return type(v).__name__


def _run_walker(sig: Signature, values: Sequence[Any], seeds: Sequence[tuple[str, int, str]],
                result: Any, has_result: bool) -> tuple[_Walker, _Failure | None]:
    w = _Walker(sig, seeds)
    for name, node, v in zip(sig.names, sig.nodes, values):
        f = w.walk(node, v, name, name)
        if f is not None:
            return w, f
    f = w.resolve(final=sig.result is None or not has_result)
    if f is not None or not has_result:
        return w, f
    f = w.walk(sig.result, result, "return value", "return value")
    return w, f if f is not None else w.resolve(final=True)


def _swap_fix(sig: Signature, values: Sequence[Any], seeds: Sequence[tuple[str, int, str]],
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


def diagnose(sig: Signature, label: str, values: Sequence[Any] | None, seeds: Sequence[tuple[str, int, str]],
             result: Any = None, has_result: bool = False) -> ShapeError:
    """The :class:`ShapeError` for a call the fast path rejected (the slow path, only on failure)."""
    if values is None:
        return ShapeError(module=label, argument="(call)", expected=str(sig.sig), actual="does not bind",
                          code="annotation", detail="the arguments do not bind to the signature")
    walker, failure = _run_walker(sig, values, seeds, result, has_result)
    if failure is None:  # the fast path and the walk disagree: say so rather than pass silently
        failure = _Failure("(call)", None, None, "the values do not fit the annotations")
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
        hints.extend(_hints(failure))
    if fitted is not None and spec is not None:
        expected = _expected(spec, fitted)  # the sizes the other arguments agree on
    elif spec is not None:
        expected = _expected(spec, walker)
    else:
        expected = (
        failure.dim.name if failure.dim is not None else "the annotation")
    return ShapeError(module=label, argument=argument, expected=expected,
                      actual=actual if isinstance(actual, (tuple, str)) or actual is None else str(actual),
                      code=code, hints=hints, detail=detail, context=[walker.bindings()])


def _expected(spec: ArraySpec, walker: _Walker) -> str:
    parts = []
    for d in spec.dims:
        value = walker.env[d.slot] if d.slot >= 0 else None
        if d.kind == NAMED and value is not None:
            parts.append(f"{d.text}={value}")
        elif d.kind == FIXED:
            parts.append(str(d.size))
        elif d.kind == SYMBOLIC:
            verdict = None
            if all(walker.env[s] is not None for _, slots in d.terms for s in slots):
                verdict = sum(c * _prod(walker.env[s] for s in slots) for c, slots in d.terms)
            parts.append(d.text if verdict is None else f"{d.text}={verdict}")
        else:
            parts.append(d.text)
    return f"{spec.label} = ({', '.join(parts)})"


def _prod(values: Any) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def _hints(f: _Failure) -> list[str]:
    d = f.dim
    if d is None:
        if "dims, received" in f.detail:
            return ["check the tensor's rank: unsqueeze(...)/squeeze(...) or reshape to the annotated dims"]
        if "dtype" in f.detail:
            return [f"convert it, e.g. {f.argument.split('[')[0]}.float(), or widen the annotation "
                    "(Shaped[...] accepts any dtype)"]
        return ["pass a value of the annotated type"]
    if d.kind == SYMBOLIC:
        return [f"{d.name} must equal the product/sum of the sizes bound elsewhere; check which factor "
                "is off (e.g. num_layers or bidirectional for layers*D)"]
    if f.bound_by and f.bound_by != f.argument.split("[")[0]:
        return [f"`{f.bound_by}` and `{f.argument}` disagree on {d.name}: one of them has the wrong size "
                "(or the annotation uses one name for two different dims)"]
    return [f"give `{f.argument}` the size the annotation names, or fix the annotation"]
