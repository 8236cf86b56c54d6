"""The non-array part of a signature: Python type hints (``int``, ``Literal['tanh', 'relu']``, ``list[int]``).

>>> from typing import Literal
>>> mode = plain_check(Literal["tanh", "relu"], "step, parameter `mode`", [])
>>> mode.ok("tanh"), mode.ok("gelu"), mode.reason("gelu")
(True, False, "str 'gelu' is not one of 'tanh', 'relu'")
>>> plain_check(int | None, "step, parameter `n`", []).classes   # plain classes: one isinstance
(<class 'int'>, <class 'NoneType'>)
>>> tags = plain_check(list[str], "step, parameter `tags`", [])     # anything else: beartype
>>> tags.ok(["a"]), tags.reason([1])
(True, 'list index 0 item int 1 not instance of str')

Every verdict here is beartype's, with one setting changed: PEP 484's numeric tower
(``is_pep484_tower=True``), so ``scale: float`` accepts an ``int`` as type checkers do. A hint made
of plain classes and literals (``int``, ``str | None``, ``Literal['tanh', 'relu']``, ``nn.Module``)
is decided inline by what beartype runs for it (``isinstance``; for a literal, ``isinstance(v,
type(lit)) and v == lit``), which a test compares with ``beartype.door.is_bearable``; any other
hint goes to a function checked by ``beartype.beartype``, built once per hint. A hint beartype
cannot check (``typing.Self``, an array annotation inside a ``list[...]``) is left unchecked and
listed in ``unchecked``; ``Any``, ``object`` and unbound type variables need no check. beartype is
imported only when a signature has a hint that needs it.
"""

from __future__ import annotations

import abc
import enum
import reprlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import AbstractArray

__all__ = ["RETRIES", "PlainCheck", "contains_array", "literal_ok", "plain_check", "show_hint", "show_value",
           "violation_type"]

_NONE = type(None)
_PLAIN_METACLASSES = (type, abc.ABCMeta, enum.EnumMeta, type(torch.Tensor))
_TOWER: dict[type, tuple[type, ...]] = {float: (float, int), complex: (complex, float, int)}
RETRIES = 32
"""How often the slow path asks a probe again: beartype checks one random item of a container per call."""
_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 40, 40, 4, 4

Literals = tuple[tuple[type, Any], ...]
"""A literal hint's values, each with its type: ``Literal['a', 1]`` -> ``((str, 'a'), (int, 1))``."""


def literal_ok(v: Any, literals: Literals) -> bool:
    """Whether ``v`` is one of the literals, as beartype decides it (the type, then ``==``).

    >>> literal_ok(True, ((int, 1),)), literal_ok(1, ((bool, True),)), literal_ok(1.0, ((int, 1),))
    (True, False, False)
    """
    for cls, value in literals:  # noqa: SIM110 -- a loop: cheaper than any() over a generator, per call
        if isinstance(v, cls) and v == value:
            return True
    return False


@dataclass(frozen=True)
class PlainCheck:
    """One non-array hint, ready to check: inline (``classes``, ``literals``) or by a beartype ``probe``."""

    hint: Any
    label: str  # how messages show the hint: int, Literal['tanh', 'relu'], list[int]
    classes: tuple[type, ...] = ()  # inline: isinstance(v, classes) ...
    literals: Literals = ()  # ... or literal_ok(v, literals) decides it
    probe: Callable[[Any], Any] | None = None  # else: raises violation_type() when v does not fit

    def ok(self, v: Any) -> bool:
        """Whether ``v`` fits (the fast path's verdict)."""
        if self.probe is None:
            return isinstance(v, self.classes) or literal_ok(v, self.literals)
        try:
            self.probe(v)
        except violation_type():
            return False
        return True

    def reason(self, v: Any) -> str | None:
        """Why ``v`` does not fit, in beartype's words where beartype decides; None if it fits (or if
        beartype, which checks one random item of a container, let it through ``RETRIES`` times)."""
        if self.probe is None:
            if self.ok(v):
                return None
            if isinstance(self.hint, type):
                return f"{show_value(v)} is not an instance of {self.label}"
            names = [show_hint(c) if c is not _NONE else "None" for c in self.classes]
            names += [repr(value) for _, value in self.literals]
            return f"{show_value(v)} is not {'one' if not self.classes else 'any'} of {', '.join(names)}"
        for _ in range(RETRIES):  # beartype checks one random item of a container per call
            try:
                self.probe(v)
            except violation_type() as e:
                return _reason(str(e))
        return None

    def fix(self, v: Any, name: str) -> str:
        """The hint line for a value that does not fit: what to pass, or how to widen the annotation.

        >>> plain_check(int, "example", []).fix("3", "n")
        'pass `n` a value of type int (got str), or widen the annotation if str is meant: int | str'
        """
        if self.literals and not self.classes:
            return f"pass `{name}` one of {', '.join(repr(value) for _, value in self.literals)}"
        if v is None:
            return f"pass `{name}` a value, or annotate it {self.label} | None if None is meant"
        if self.probe is not None or self.literals:
            return f"pass `{name}` a value that fits {self.label}, or change the annotation"
        got = type(v).__name__
        return (f"pass `{name}` a value of type {self.label} (got {got}), or widen the annotation "
                f"if {got} is meant: {self.label} | {got}")


def violation_type() -> type[Exception]:
    """The exception a probe raises for a value that does not fit (beartype's call-hint violation)."""
    from beartype.roar import BeartypeCallHintViolation

    return BeartypeCallHintViolation


def show_hint(hint: Any) -> str:
    """A hint as messages show it.

    >>> from typing import Literal, Optional
    >>> show_hint(int), show_hint(Optional[int]), show_hint(Literal["a", "b"]), show_hint(list[int])
    ('int', 'Optional[int]', "Literal['a', 'b']", 'list[int]')
    """
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__qualname__ if hint.__module__ == "builtins" else f"{hint.__module__}.{hint.__qualname__}"
    return repr(hint).replace("typing.", "")


def show_value(v: Any) -> str:
    """A value as messages show it: its type and a short repr (``str 'x'``, ``int 3``, ``list [1, 2]``)."""
    if v is None:
        return "None"
    try:
        text = _SHORT.repr(v)
    except Exception:  # a user object whose repr fails: its type says enough
        return type(v).__name__
    return f"{type(v).__name__} {text}"


def _reason(message: str) -> str:
    """The reason part of beartype's violation message, on one line.

    >>> _reason("Function f() parameter v=1 violates type hint <class 'str'>, as int 1 not instance of str.")
    'int 1 not instance of str'
    """
    text = message.split(", as ", 1)[1] if ", as " in message else message
    lines = [line.strip().removeprefix("* ").rstrip(".") for line in text.strip().splitlines()]
    return lines[0] + " " + "; ".join(line for line in lines[1:] if line) if len(lines) > 1 else lines[0]


def contains_array(hint: Any) -> bool:
    """Whether a jaxtyping array annotation sits anywhere inside ``hint``."""
    return any(isinstance(h, type) and issubclass(h, AbstractArray) for h in _walk(hint))


def _walk(hint: Any) -> list[Any]:
    """``hint`` and every hint inside it (not the values of a ``Literal`` or an ``Annotated``'s metadata)."""
    out, todo = [], [hint]
    while todo:
        h = todo.pop()
        if isinstance(h, (list, tuple)):  # Callable[[int, str], X] holds a list
            todo.extend(h)
            continue
        out.append(h)
        origin = typing.get_origin(h)
        if origin is typing.Literal:
            continue
        args = typing.get_args(h)
        todo.extend(args[:1] if origin is typing.Annotated else args)
    return out


def _inline(hint: Any) -> tuple[tuple[type, ...], Literals] | None:
    """The classes and literals that decide ``hint`` when it is made of those only; else None."""
    if hint is None or hint is _NONE:
        return (_NONE,), ()
    if type(hint) in _PLAIN_METACLASSES and not typing.get_args(hint) and not getattr(hint, "_is_protocol", False):
        return _TOWER.get(hint, (hint,)), ()
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        values = typing.get_args(hint)
        return (((_NONE,) if None in values else ()),
                tuple((type(value), value) for value in values if value is not None))
    if origin in (typing.Union, types.UnionType):
        classes: list[type] = []
        literals: list[tuple[type, Any]] = []
        for member in typing.get_args(hint):
            parts = _inline(member)
            if parts is None:
                return None
            classes.extend(c for c in parts[0] if c not in classes)
            literals.extend(parts[1])
        return tuple(classes), tuple(literals)
    return None


def _probe(hint: Any, is_return: bool) -> Callable[[Any], Any] | None:
    """A function beartype checks ``hint`` on (its parameter, or its return value); None: nothing to check."""
    from beartype import BeartypeConf, beartype

    def probe(v: Any) -> Any:
        return v

    probe.__annotations__ = {"return": hint} if is_return else {"v": hint}
    checked = beartype(conf=BeartypeConf(is_pep484_tower=True))(probe)
    return None if checked is probe else checked


def plain_check(hint: Any, where: str, unchecked: list[str], is_return: bool = False) -> PlainCheck | None:
    """The check of one non-array hint; None when it needs none (``Any``) or beartype cannot check it
    (then ``where`` and the reason are appended to ``unchecked``)."""
    parts = _walk(hint)
    if any(isinstance(h, type) and issubclass(h, AbstractArray) for h in parts):
        unchecked.append(f"{where}: {show_hint(hint)} (sv.check reads array annotations at the top level and "
                         "inside tuple[...], Optional and unions only)")
        return None
    if any(isinstance(h, (str, typing.ForwardRef)) for h in parts):
        unchecked.append(f"{where}: {show_hint(hint)} (a forward reference that was not resolved)")
        return None
    label = show_hint(hint)
    inline = _inline(hint)
    if inline is not None:
        return None if object in inline[0] else PlainCheck(hint, label, *inline)
    from beartype.roar import BeartypeException

    try:
        probe = _probe(hint, is_return)
    except BeartypeException as e:
        reason = str(e).split("\n", 1)[0]
        unchecked.append(f"{where}: {label} (beartype cannot check it: {reason})")
        return None
    return PlainCheck(hint, label, probe=probe) if probe is not None else None
