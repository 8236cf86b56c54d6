"""Parse jaxtyping annotations into a tree of :class:`AnnotationNode` (read, never evaluated).

>>> from jaxtyping import Float
>>> from torch import Tensor
>>> slots = Slots()
>>> node = parse_annotation(Float[Tensor, "layers*D bs h"], slots, "example")
>>> node.kind.name, [d.kind.name for d in node.array.dims], slots.index
('ARRAY', ['SYMBOLIC', 'NAMED', 'NAMED'], {'layers': 0, 'D': 1, 'bs': 2, 'h': 3})

Dim names become integer slots into a per-call bindings list. Symbolic dims are sums and
differences of products of names and integers (``layers*D``, ``T*bs``, ``n+1``), kept as
``((coef, (slot, ...)), ...)`` terms for :mod:`shapeviz.annotations.solver`.
"""

from __future__ import annotations

import enum
import functools
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from jaxtyping import AbstractArray

from shapeviz._errors import SpecError
from shapeviz.annotations.pytypes import PlainCheck, plain_check

__all__ = ["AnnotationNode", "ArraySpec", "Dim", "DimKind", "NodeKind", "Slots", "Terms", "dtype_matches",
           "dtype_name", "holds_array", "parse_annotation", "parse_dims"]

_TERM = re.compile(r"[+-]?[^+-]+")
_INT = re.compile(r"[0-9]+\Z")

Terms = tuple[tuple[int, tuple[int, ...]], ...]
"""A symbolic dim: the sum of ``coef * prod(env[slot] for slot in slots)`` over its terms."""


class DimKind(enum.Enum):
    """What one token of a dim string is."""

    ANON = enum.auto()  # _ or _name: any size, bound to nothing
    FIXED = enum.auto()  # 20
    NAMED = enum.auto()  # bs
    SYMBOLIC = enum.auto()  # layers*D
    VAR_ANON = enum.auto()  # ...
    VAR_NAMED = enum.auto()  # *batch


class NodeKind(enum.Enum):
    """What a node of a parsed annotation is."""

    ARRAY = enum.auto()  # Float[Tensor, "..."]
    OPTIONAL = enum.auto()  # X | None
    TUPLE = enum.auto()  # tuple[X, Y]
    VARTUPLE = enum.auto()  # tuple[X, ...] (and *args: X)
    UNION = enum.auto()  # X | Y
    TYPE = enum.auto()  # a non-array hint (int, Literal[...], list[int]), checked as beartype checks it
    VARDICT = enum.auto()  # **kwargs: X (X a non-array hint)


@dataclass(frozen=True)
class Dim:
    """One token of a dim string: its kind, the text as written, and what it refers to."""

    kind: DimKind
    text: str
    bcast: bool = False
    size: int = 0  # FIXED
    slot: int = -1  # NAMED / VAR_NAMED
    name: str = ""  # NAMED / VAR_NAMED / SYMBOLIC (the expression)
    terms: Terms = ()  # SYMBOLIC


@dataclass(frozen=True)
class ArraySpec:
    """A parsed ``Float[Tensor, "T bs emb"]``: type, allowed dtypes and dims."""

    label: str  # e.g. Float[Tensor, 'T bs emb']
    array_type: Any
    dtypes: tuple[torch.dtype, ...] | None  # None: any dtype
    dtype_names: tuple[str | re.Pattern[str], ...] | None
    dims: tuple[Dim, ...]
    variadic: int | None  # index of the *name / ... dim

    def position(self, i: int) -> int:
        """Index into ``.shape`` of dim ``i`` (negative after a variadic dim)."""
        if self.variadic is None or i < self.variadic:
            return i
        return i - len(self.dims)


@dataclass(frozen=True)
class AnnotationNode:
    """A parsed annotation: an array, an optional, a tuple, a homogeneous tuple, a union or a type."""

    kind: NodeKind
    array: ArraySpec | None = None
    children: tuple[AnnotationNode | None, ...] = ()
    plain: PlainCheck | None = None  # for TYPE: the non-array hint's check


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


def dtype_matches(name: str, wanted: Sequence[str | re.Pattern[str]]) -> bool:
    """Whether a dtype name is one of jaxtyping's ``wanted`` names (or matches one of its patterns)."""
    return any((w == name) if isinstance(w, str) else bool(w.match(name)) for w in wanted)


class Slots:
    """Names used by a signature, each mapped to an index into the per-call bindings list (and the
    hints that parsing had to leave unchecked)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.variadic: set[str] = set()
        self.unchecked: list[str] = []  # hints left unchecked, each with where it is and why

    def get(self, name: str, variadic: bool, where: str) -> int:
        """The slot of ``name`` (a new one the first time it is seen)."""
        if name in self.index and (name in self.variadic) != variadic:
            raise SpecError(f"{where}: {name!r} is used both as a single dim and as a variadic "
                            f"`*{name}`; give them different names")
        if variadic:
            self.variadic.add(name)
        return self.index.setdefault(name, len(self.index))


def _parse_symbolic(expr: str, slots: Slots, where: str) -> Terms:
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


def parse_dims(dim_str: str, slots: Slots, where: str) -> tuple[tuple[Dim, ...], int | None]:
    """Parse a jaxtyping dim string the way jaxtyping reads it, into :class:`Dim` tokens.

    >>> dims, variadic = parse_dims("*batch T 4*h", Slots(), "example")
    >>> [d.kind.name for d in dims], variadic
    (['VAR_NAMED', 'NAMED', 'SYMBOLIC'], 0)
    """
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
                dims.append(Dim(DimKind.VAR_ANON, token))
            else:
                dims.append(Dim(DimKind.VAR_NAMED, token, bcast, slot=slots.get(elem, True, where), name=elem))
        elif anon or not elem:
            dims.append(Dim(DimKind.ANON, token))
        elif elem.isidentifier():
            dims.append(Dim(DimKind.NAMED, token, bcast, slot=slots.get(elem, False, where), name=elem))
        elif _INT.match(elem):
            dims.append(Dim(DimKind.FIXED, token, bcast, size=int(elem)))
        else:
            dims.append(Dim(DimKind.SYMBOLIC, token, bcast, name=elem, terms=_parse_symbolic(elem, slots, where)))
    return tuple(dims), variadic_at


@functools.lru_cache(maxsize=256)
def _torch_dtypes_for(names: tuple[str | re.Pattern[str], ...]) -> tuple[torch.dtype, ...]:
    """The torch dtypes whose jaxtyping name is one of ``names`` (once per dtype family)."""
    return tuple(d for d in _TORCH_DTYPES if dtype_matches(dtype_name(d), names))


def _is_array_annotation(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, AbstractArray) and tp is not AbstractArray


def _parse_array(tp: Any, slots: Slots, where: str) -> ArraySpec:
    dims, variadic = parse_dims(tp.dim_str, slots, where)
    names = tp.dtypes if isinstance(tp.dtypes, (list, tuple)) else None
    dtypes = _torch_dtypes_for(tuple(names)) if names is not None else None
    return ArraySpec(tp.__name__, tp.array_type, dtypes, tuple(names) if names is not None else None,
                     dims, variadic)


def holds_array(tp: Any) -> bool:
    """Whether ``tp`` is an array annotation, or an ``Annotated``, union or ``tuple[...]`` holding one."""
    if _is_array_annotation(tp) or (isinstance(tp, type) and tp.__module__ == "jaxtyping" and hasattr(tp, "dtypes")):
        return True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return holds_array(args[0])
    if origin in (Union, types.UnionType, tuple):
        return any(holds_array(a) for a in args if a is not Ellipsis and a != ())
    return False


def parse_annotation(tp: Any, slots: Slots, where: str, is_return: bool = False) -> AnnotationNode | None:
    """Parse one annotation; None when there is nothing to check (``Any``, or a hint left unchecked:
    ``slots.unchecked`` says why). A hint without arrays becomes one TYPE node (beartype's check)."""
    if not holds_array(tp):
        check = plain_check(tp, where, slots.unchecked, is_return)
        return None if check is None else AnnotationNode(NodeKind.TYPE, plain=check)
    if _is_array_annotation(tp):
        return AnnotationNode(NodeKind.ARRAY, array=_parse_array(tp, slots, where))
    if isinstance(tp, type):
        raise SpecError(f"{where}: {tp.__name__} needs an array type and dims, "
                        f"e.g. {tp.__name__}[Tensor, \"bs T\"]")
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return parse_annotation(args[0], slots, where)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            child = parse_annotation(args[0], slots, where)
            return None if child is None else AnnotationNode(NodeKind.VARTUPLE, children=(child,))
        children = tuple(parse_annotation(a, slots, where) for a in args if a != ())
        return AnnotationNode(NodeKind.TUPLE, children=children)
    others = [a for a in args if a is not type(None)]  # a union
    kids = tuple(parse_annotation(a, slots, where) for a in others)
    if any(k is None for k in kids):
        return None  # a member that takes anything (Any) or that is left unchecked: so is the union
    if len(others) == 1:
        return AnnotationNode(NodeKind.OPTIONAL, children=kids)
    node = AnnotationNode(NodeKind.UNION, children=kids)
    return AnnotationNode(NodeKind.OPTIONAL, children=(node,)) if len(others) < len(args) else node
