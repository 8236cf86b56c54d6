"""Your own recurrent layers: a declaration of their conventions in shapeviz's dim names, compiled to a Layout.

>>> import torch.nn as nn
>>> class Scratch(nn.Module):
...     def __init__(self, num_inputs: int, num_hiddens: int) -> None:
...         super().__init__()
...         self.num_inputs, self.num_hiddens = num_inputs, num_hiddens
>>> d = declare(Scratch, input="T bs emb", state=("bs h",), sizes={"emb": "num_inputs", "h": "num_hiddens"})
>>> d.sizes_of(Scratch(28, 32))
{'emb': 28, 'h': 32}
>>> d.input, d.state, d.state_tuple
(('T', 'bs', 'emb'), (('bs', 'h'),), True)

The declaration says, for a class, which dims its first argument (the input) and second argument (the state)
have, and which attribute of a module gives each size. :func:`shapeviz.core.model.conventions` compiles it, per
module, to the same :class:`~shapeviz.core.model.Conventions` and ``Layout`` that torch's layers get: a
declaration that describes torch's own conventions (``"T bs emb"``, ``("layers*D bs h", "layers*D bs h")``)
*is* an LSTM's, checked and explained as one; any other compiles to a Conventions whose dims are the
declaration's.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shapeviz._errors import SpecError
from shapeviz.core.dimensions import is_simple_name

__all__ = ["Declaration", "declaration_of", "declare", "declared_types", "undeclare"]

SizeSource = str | Callable[[Any], int]
"""Where a size comes from: a module attribute's name (``"hidden_size"``) or a function of the module."""

_FIXED = ("T", "bs")  # the dims every call brings: time steps and batch


@dataclass(frozen=True, eq=False)
class Declaration:
    """One class's declared conventions (see :func:`declare`); the dims are tuples of dim expressions.

    >>> import torch.nn as nn
    >>> Declaration("MyCell", ("bs", "emb"), (("bs", "h"),), False, None, True, (("emb", "n_in"), ("h", "n_h"))).spec
    "input='bs emb', state='bs h', cell=True"
    """

    cls_name: str
    input: tuple[str, ...]
    state: tuple[tuple[str, ...], ...]
    state_tuple: bool  # the state is passed as a tuple (also a 1-tuple), not as one tensor
    output: tuple[str, ...] | None
    cell: bool
    sizes: tuple[tuple[str, SizeSource], ...]

    @property
    def spec(self) -> str:
        """The declaration as written in a message: ``input="T bs emb", state=("bs h",)``."""
        def text(d: tuple[str, ...]) -> str:
            return repr(" ".join(d))
        state = [text(s) for s in self.state]
        st = f"({', '.join(state)}{',' if len(state) == 1 else ''})" if self.state_tuple else state[0]
        out = f', output={text(self.output)}' if self.output else ""
        return f"input={text(self.input)}, state={st}{out}" + (", cell=True" if self.cell else "")

    def sizes_of(self, module: Any) -> dict[str, int]:
        """The declared sizes read from ``module`` (a clear SpecError for an attribute it lacks).

        >>> import types
        >>> d = Declaration("C", ("bs", "emb"), (("bs", "h"),), False, None, True, (("emb", "n_in"), ("h", "n_h")))
        >>> d.sizes_of(types.SimpleNamespace(n_in=4, n_h=6))
        {'emb': 4, 'h': 6}
        """
        out: dict[str, int] = {}
        for name, src in self.sizes:
            if callable(src):
                try:
                    value = src(module)
                except Exception as e:  # a user's function: its failure says which size
                    raise SpecError(f"sv.recurrent({self.cls_name}): sizes[{name!r}] raised "
                                    f"{type(e).__name__}: {e}") from None
                where = f"sizes[{name!r}](module)"
            else:
                try:
                    value = getattr(module, src)
                except AttributeError:
                    have = sorted(k for k, v in vars(module).items()
                                  if not k.startswith("_") and isinstance(v, int) and not isinstance(v, bool))
                    raise SpecError(f"sv.recurrent({self.cls_name}): sizes[{name!r}] = {src!r}, but a "
                                    f"{self.cls_name} has no attribute {src!r}; its int attributes: "
                                    f"{', '.join(have) or 'none'}") from None
                where = f"{self.cls_name}.{src}"
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                if hasattr(value, "__index__") and not isinstance(value, bool):
                    value = value.__index__()
                else:
                    raise SpecError(f"sv.recurrent({self.cls_name}): {where} must be a non-negative int "
                                    f"(the size of {name}), got {value!r}")
            out[name] = int(value)
        return out


_REGISTRY: weakref.WeakKeyDictionary[type, Declaration] = weakref.WeakKeyDictionary()  # a class lives on its own
_lookup: weakref.WeakKeyDictionary[type, Declaration | None] = weakref.WeakKeyDictionary()  # with ancestors (cache)


def _dims(spec: object, what: str, cls_name: str) -> tuple[str, ...]:
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"sv.recurrent({cls_name}): {what} must be a string of dim names such as 'T bs emb', "
                        f"got {spec!r}")
    out = tuple(spec.replace(",", " ").split())
    for expr in out:
        for f in expr.split("*"):
            if not (f.isdigit() or is_simple_name(f)):
                raise SpecError(f"sv.recurrent({cls_name}): {expr!r} in {what}={spec!r} is not a dim name "
                                "(names such as T, bs, emb, h; products such as layers*D)")
    return out


def declare(cls: type, *, input: str, state: str | tuple[str, ...] | list[str], output: str | None = None,
            cell: bool = False, sizes: Mapping[str, SizeSource]) -> Declaration:
    """Register ``cls``'s conventions (a second call for the class replaces the first) and return them.

    ``input`` names the first argument's dims (``T`` and ``bs`` where they sit; a cell has no ``T``);
    ``state`` the second argument's: one string for one tensor, a tuple of strings for a tuple (a 1-tuple too);
    ``sizes`` maps every other dim name to the module attribute (or a function of the module) giving its size.

    >>> import torch.nn as nn
    >>> class Cell(nn.Module): ...
    >>> declare(Cell, input="bs emb", state="bs h", cell=True, sizes={"emb": "n_in", "h": "n_h"}).state_tuple
    False
    >>> undeclare(Cell)
    """
    if not isinstance(cls, type):
        raise SpecError(f"sv.recurrent takes a class (an nn.Module subclass), got {type(cls).__name__}")
    name = cls.__name__
    if not isinstance(sizes, Mapping) or not sizes:
        raise SpecError(f"sv.recurrent({name}): sizes must be a dict from dim name to the module attribute "
                        "that gives its size, e.g. sizes={'emb': 'input_size', 'h': 'hidden_size'}")
    pairs: list[tuple[str, SizeSource]] = []
    for dim, src in sizes.items():
        if not isinstance(dim, str) or not is_simple_name(dim) or dim in _FIXED:
            raise SpecError(f"sv.recurrent({name}): {dim!r} in sizes is not a size the module gives "
                            "(a dim name other than T and bs, which every call brings)")
        if not (callable(src) or (isinstance(src, str) and all(is_simple_name(p) for p in src.split(".")))):
            raise SpecError(f"sv.recurrent({name}): sizes[{dim!r}] must be an attribute name such as "
                            f"'hidden_size' or a function of the module, got {src!r}")
        pairs.append((dim, src))
    if not isinstance(cell, bool):
        raise SpecError(f"sv.recurrent({name}): cell must be True or False, got {cell!r}")
    inp = _dims(input, "input", name)
    if isinstance(state, str):
        states, as_tuple = (_dims(state, "state", name),), False
    elif isinstance(state, (tuple, list)) and state:
        states, as_tuple = tuple(_dims(s, "state", name) for s in state), True
    else:
        raise SpecError(f"sv.recurrent({name}): state must be a string such as 'bs h' (one tensor) or a tuple "
                        f"of them such as ('bs h', 'bs h') (a tuple state), got {state!r}")
    out = _dims(output, "output", name) if output is not None else None
    known = {n for n, _ in pairs} | set(_FIXED)
    valid = ", ".join(sorted(known, key=str.lower))
    for what, dims in (("input", inp), *(("state", s) for s in states), ("output", out or ())):
        for expr in dims:
            for f in expr.split("*"):
                if not f.isdigit() and f not in known:
                    raise SpecError(f"sv.recurrent({name}): unknown dim {f!r} in {what}; known: {valid} "
                                    "(add it to sizes=, with the attribute that gives its size)")
    if inp.count("bs") != 1:
        raise SpecError(f"sv.recurrent({name}): input={input!r} must name the batch dim bs once")
    if cell and "T" in inp:
        raise SpecError(f"sv.recurrent({name}): a cell (cell=True) takes one time step: input={input!r} "
                        "has no T (write e.g. 'bs emb')")
    if not cell and inp.count("T") != 1:
        raise SpecError(f"sv.recurrent({name}): a layer's input={input!r} must name the time dim T once "
                        "(or declare a one-step cell with cell=True)")
    for s in states:
        if s.count("bs") != 1 or "T" in s:
            raise SpecError(f"sv.recurrent({name}): every state tensor names the batch dim bs once and no T; "
                            f"got {' '.join(s)!r}")
    decl = Declaration(name, inp, states, as_tuple, out, cell, tuple(pairs))
    _REGISTRY[cls] = decl
    _lookup.clear()
    return decl


def undeclare(cls: type) -> None:
    """Forget ``cls``'s declaration (its modules are plain modules again)."""
    _REGISTRY.pop(cls, None)
    _lookup.clear()


def declaration_of(cls: type) -> Declaration | None:
    """The declaration of ``cls`` or of its nearest declared ancestor; None if there is none (one dict read)."""
    try:
        return _lookup[cls]
    except KeyError:
        pass
    found = next((_REGISTRY[k] for k in cls.__mro__ if k in _REGISTRY), None)
    _lookup[cls] = found
    return found


def declared_types() -> tuple[type, ...]:
    """The classes declared now."""
    return tuple(_REGISTRY)
