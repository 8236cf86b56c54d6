"""The one model of PyTorch's recurrent shape conventions.

>>> import torch.nn as nn
>>> c = conventions(nn.LSTM(10, 20, num_layers=2, bidirectional=True))
>>> c.symbolic["input"], c.symbolic["h_0"], c.symbolic["output"]
('T bs emb', 'layers*D bs h', 'T bs D*h')
>>> c.shapes(T=5, bs=3)["h_n"]
(4, 3, 20)

Everything else in shapeviz (checks, explanations, traces, diagrams) reads shapes from here;
nothing else derives a shape rule.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter, itemgetter
from typing import Any

import torch.nn as nn

from shapeviz._errors import SpecError
from shapeviz._views import show
from shapeviz.core.declared import Declaration, declaration_of
from shapeviz.core.dimensions import expr_size, format_named

FAMILIES = ("RNN", "LSTM", "GRU")
LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.RNN, nn.LSTM, nn.GRU)
CELL_TYPES: tuple[type[nn.Module], ...] = (nn.RNNCell, nn.LSTMCell, nn.GRUCell)
RECURRENT_TYPES = LAYER_TYPES + CELL_TYPES
CLASS_NAMES = ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")

GATES: dict[str, int] = {"RNN": 1, "GRU": 3, "LSTM": 4}
"""Gates per family: the weights are ``(gates*h, …)`` (PyTorch's ``weight_ih_l0`` is ``(4*h, emb)`` for LSTM)."""

# PyTorch docs notation for style="torch"
_TORCH_NAMES = {"T": "L", "bs": "N", "emb": "H_in", "layers": "num_layers", "D": "D",
                "sum(lengths)": "sum(lengths)"}


@dataclass(frozen=True)
class Layout:
    """The layout rule of one module, compiled once: every consumer reads it, none re-derives it.

    >>> lay = Conventions("LSTM", cell=False, input_size=4, hidden_size=6, batch_first=True).layout
    >>> lay.t_axis, lay.bs_axis, lay.batched_ndim, lay.unbatched_ndim, lay.state_arity
    (1, 0, 3, 2, 2)
    >>> lay.seq_sizes((2, 5, 4))  # (T, bs, batched) read from an input shape
    (5, 2, True)
    >>> lay.seq_text, lay.swapped_text
    ('(bs, T, emb)', '(T, bs, emb)')
    """

    cell: bool
    batch_first: bool
    t_axis: int | None  # axis of T in a batched input (None: a cell's input has no time axis)
    bs_axis: int  # axis of bs in a batched input
    batched_ndim: int  # 3 for a layer, 2 for a cell
    unbatched_ndim: int  # 2 for a layer, 1 for a cell
    state_arity: int  # 2: an LSTM's (h, c); 1: one state tensor
    state_batched_ndim: int  # 3 (layers*D, bs, h) for a layer, 2 (bs, h) for a cell
    state_bs_axis: int  # 1 for a layer's state, 0 for a cell's
    h_out: int  # last dim of h (proj_size when set)
    c_size: int  # last dim of c (hidden_size)
    gates: int
    torch_names: tuple[tuple[str, str], ...]  # seeds' dim name -> PyTorch docs' name
    input_dims: tuple[str, ...] = ()  # a declared layer's input dims (sv.recurrent); () for torch's layouts
    state_tuple: bool = False  # a declared one-tensor state passed as a 1-tuple

    @property
    def declared(self) -> bool:
        """True for the layout of a layer declared with ``sv.recurrent`` whose conventions are not torch's."""
        return bool(self.input_dims)

    @property
    def seq_text(self) -> str:
        """The batched input layout in named dims: ``"(T, bs, emb)"``, ``"(bs, T, emb)"`` or ``"(bs, emb)"``."""
        if self.input_dims:
            return f"({', '.join(self.input_dims)})"
        if self.cell:
            return "(bs, emb)"
        return "(bs, T, emb)" if self.batch_first else "(T, bs, emb)"

    @property
    def swapped_text(self) -> str:
        """The layout a swapped input has (the other ``batch_first``): what a ``batch_first_swap`` looks like."""
        if self.input_dims:
            swap = {"T": "bs", "bs": "T"}
            return f"({', '.join(swap.get(d, d) for d in self.input_dims)})"
        return "(T, bs, emb)" if self.batch_first else "(bs, T, emb)"

    @property
    def step_text(self) -> str:
        """One time step of a batched input: ``"(T=1, bs, emb)"`` or ``"(bs, T=1, emb)"``."""
        if self.input_dims:
            return f"({', '.join('T=1' if d == 'T' else d for d in self.input_dims)})"
        return "(bs, T=1, emb)" if self.batch_first else "(T=1, bs, emb)"

    @property
    def flag_text(self) -> str:
        """The constructor flag as written: ``"batch_first=True"`` or ``"batch_first=False"``."""
        return f"batch_first={self.batch_first}"

    @property
    def flag_note(self) -> str:
        """The flag to show beside a batched input or output: ``"batch_first=True"``, or ``""`` (the default, and
        a declared layer's: it has no such flag)."""
        return self.flag_text if self.batch_first and not self.input_dims else ""

    def rebuild_hint(self, kind: str) -> str:
        """The hint that fixes a ``batch_first_swap`` by building the layer the other way.

        >>> Conventions("GRU", cell=False, input_size=4, hidden_size=6).layout.rebuild_hint("GRU")
        'or build the layer with batch_first=True: nn.GRU(..., batch_first=True)'
        """
        if self.batch_first:
            return "or build the layer with batch_first=False"
        return f"or build the layer with batch_first=True: nn.{kind}(..., batch_first=True)"

    @property
    def time_index(self) -> str:
        """The index prefix that picks one step of a batched sequence: ``""`` (seq-first) or ``":, "``."""
        return ":, " * (self.t_axis or 0)

    def is_batched(self, ndim: int) -> bool | None:
        """True for a batched input's ndim, False for an unbatched one, None for neither."""
        if ndim == self.batched_ndim:
            return True
        return False if ndim == self.unbatched_ndim else None

    def seq_sizes(self, shape: Sequence[int]) -> tuple[int | None, int | None, bool] | None:
        """``(T, bs, batched)`` of an input shape (None where the module has no such dim); None for a bad ndim."""
        batched = self.is_batched(len(shape))
        if batched is None:
            return None
        if self.cell:
            return None, (shape[0] if batched else None), batched
        if not batched:
            return shape[0], None, False
        return shape[self.t_axis], shape[self.bs_axis], True  # type: ignore[index]

    @property
    def weight_name(self) -> str:
        """The first input weight, whose dtype and device are the module's: ``weight_ih`` (cell) or ``weight_ih_l0``
        (``""`` for a declared layer: its first floating parameter stands for it, see :func:`module_weight`)."""
        if self.input_dims:
            return ""
        return "weight_ih" if self.cell else "weight_ih_l0"

    def torch_name(self, name: str) -> str:
        """A seeds' dim name in PyTorch's docs notation (``T`` -> ``L``); others unchanged."""
        return dict(self.torch_names).get(name, name)


@dataclass(frozen=True)
class Conventions:
    """Named, symbolic and concrete shapes of every argument and result of one recurrent module.

    >>> c = Conventions("GRU", cell=False, input_size=8, hidden_size=16, batch_first=True)
    >>> c.symbolic
    {'input': 'bs T emb', 'h_0': 'layers*D bs h', 'output': 'bs T D*h', 'h_n': 'layers*D bs h'}
    >>> c.shapes(T=5, bs=2)["output"]
    (2, 5, 16)
    """

    family: str
    cell: bool
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    proj_size: int = 0
    label: str = ""
    name: str = ""  # the class name of a layer declared with sv.recurrent ("" for torch's classes)
    declaration: Declaration | None = None  # its declared dims, where they are not torch's conventions
    declared_sizes: tuple[tuple[str, int], ...] = ()  # the sizes its declaration read from the module

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise SpecError(f"unknown recurrent family {self.family!r}; valid: {', '.join(FAMILIES)}")
        if self.cell and (self.num_layers != 1 or self.bidirectional or self.batch_first or self.proj_size):
            raise SpecError("cells have no num_layers, bidirectional, batch_first or proj_size")
        if self.proj_size and self.family != "LSTM":
            raise SpecError("proj_size exists only for LSTM")
        if not self.label:
            object.__setattr__(self, "label", self._default_label())

    # ---------------------------------------------------------------- derived sizes
    @property
    def kind(self) -> str:
        """The class name: ``"LSTM"``, ``"GRUCell"``, … (a declared layer's own class name)"""
        return self.name or self.family + ("Cell" if self.cell else "")

    @property
    def D(self) -> int:
        """Number of directions: 2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def stacked(self) -> int:
        """First dim of a layer's state, ``layers*D`` (1 for cells, which have none)."""
        return self.num_layers * self.D

    @property
    def is_lstm(self) -> bool:
        return self.family == "LSTM"

    @property
    def h_out(self) -> int:
        """Last dim of ``h``: ``proj_size`` when set, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    def state_index(self, layer: int, direction: int = 0) -> int:
        """Index of (layer, direction) in the stacked ``(layers*D, bs, h)`` state: ``layer*D + direction``.

        >>> Conventions("LSTM", cell=False, input_size=4, hidden_size=6, num_layers=2,
        ...             bidirectional=True).state_index(1, 1)
        3
        """
        if not (0 <= layer < self.num_layers and 0 <= direction < self.D):
            raise SpecError(f"layer must be in 0..{self.num_layers - 1} and direction in 0..{self.D - 1}")
        return layer * self.D + direction

    @cached_property
    def layout(self) -> Layout:
        """The compiled :class:`Layout`: axes of T and bs, ndims, state arity, ``h_out``, gates, torch names."""
        bf = self.batch_first and not self.cell
        d = self.declaration
        if d is not None:
            sizes = dict(self.declared_sizes)
            return Layout(
                cell=d.cell, batch_first=bf, t_axis=None if d.cell else d.input.index("T"),
                bs_axis=d.input.index("bs"), batched_ndim=len(d.input), unbatched_ndim=-1,
                state_arity=len(d.state), state_batched_ndim=len(d.state[0]), state_bs_axis=d.state[0].index("bs"),
                h_out=self.hidden_size, c_size=expr_size(d.state[-1][-1], sizes) or 0,
                gates=GATES[self.family], torch_names=tuple(_TORCH_NAMES.items()), input_dims=d.input,
                state_tuple=d.state_tuple)
        return Layout(
            cell=self.cell, batch_first=bf,
            t_axis=None if self.cell else (1 if bf else 0), bs_axis=0 if (self.cell or bf) else 1,
            batched_ndim=2 if self.cell else 3, unbatched_ndim=1 if self.cell else 2,
            state_arity=2 if self.is_lstm else 1,
            state_batched_ndim=2 if self.cell else 3, state_bs_axis=0 if self.cell else 1,
            h_out=self.h_out, c_size=self.hidden_size, gates=GATES[self.family],
            torch_names=tuple(_TORCH_NAMES.items()),
        )

    def torch_sizes(self, T: int | None = None, bs: int | None = None) -> dict[str, int | None]:
        """Sizes by PyTorch's docs names (``L``, ``N``, ``H_in``, ``H_out``, ``H_cell``, …), for ``style="torch"``."""
        return {"L": T, "N": bs, "H_in": self.input_size, "H_out": self.h_out, "H_cell": self.hidden_size,
                "num_layers": self.num_layers, "D": self.D, "sum(lengths)": None}

    @property
    def state_names(self) -> tuple[str, ...]:
        """Initial states: ``("h_0", "c_0")`` for LSTMs, else ``("h_0",)`` (a declared layer: one per state tensor)."""
        if self.declaration is not None:
            return _state_names(len(self.declaration.state), "0")
        return ("h_0", "c_0") if self.is_lstm else ("h_0",)

    @property
    def result_names(self) -> tuple[str, ...]:
        d = self.declaration
        if d is not None:
            states = _state_names(len(d.state), "1" if d.cell else "n")
            return states if d.cell else ("output", *states)  # an undeclared output has no dims, only its name
        if self.cell:
            return ("h_1", "c_1") if self.is_lstm else ("h_1",)
        return ("output", "h_n", "c_n") if self.is_lstm else ("output", "h_n")

    @cached_property
    def sizes(self) -> dict[str, int]:
        """Sizes of the module's own named dims: emb, h, layers, D (and proj; a declared layer's own)."""
        if self.declaration is not None:
            return dict(self.declared_sizes)
        s = {"emb": self.input_size, "h": self.hidden_size}
        if not self.cell:
            s.update(layers=self.num_layers, D=self.D)
        if self.proj_size:
            s["proj"] = self.proj_size
        return s

    # ---------------------------------------------------------------- symbolic shapes
    def dim_exprs(self, batched: bool = True, packed: bool = False) -> dict[str, tuple[str, ...]]:
        """Each argument's and result's shape as a tuple of dim expressions.

        >>> Conventions("RNN", cell=False, input_size=4, hidden_size=3).dim_exprs(batched=False)["h_0"]
        ('layers*D', 'h')
        """
        return _dims(self, batched, packed)

    def dims(self, batched: bool = True, packed: bool = False) -> dict[str, tuple[str, ...]]:
        """The old name of :meth:`dim_exprs` (``sv.dims`` is what declares sizes): a DeprecationWarning."""
        import warnings

        warnings.warn("Conventions.dims() is now Conventions.dim_exprs() (sv.dims declares sizes)",
                      DeprecationWarning, stacklevel=2)
        return _dims(self, batched, packed)

    @cached_property
    def symbolic(self) -> dict[str, str]:
        """Batched symbolic shapes, e.g. ``{"input": "T bs emb", "h_0": "layers*D bs h", …}``."""
        return {k: " ".join(v) for k, v in self.dim_exprs().items()}

    def symbolic_style(self, style: str = "named", batched: bool = True, packed: bool = False) -> dict[str, str]:
        """Symbolic shapes in shapeviz's dim names (``"named"``: T, bs, emb, h) or PyTorch's docs notation
        (``"torch"``: L, N, H_in, H_out)."""
        style = style_of(style)
        out = {}
        for name, exprs in self.dim_exprs(batched, packed).items():
            if style == "torch":
                exprs = tuple(self.torch_expr(e, name) for e in exprs)
            out[name] = " ".join(exprs)
        return out

    def torch_expr(self, expr: str, arg: str = "") -> str:
        """A dim expression of argument ``arg`` in PyTorch's docs notation.

        >>> c = Conventions("LSTM", cell=False, input_size=4, hidden_size=6, proj_size=3)
        >>> c.torch_expr("layers*D", "h_0"), c.torch_expr("h", "h_0"), c.torch_expr("h", "c_0"), c.torch_expr("T")
        ('D*num_layers', 'H_out', 'H_cell', 'L')
        """
        out = []
        for f in expr.split("*"):
            if f in ("h", "proj"):
                f = "H_cell" if (arg.startswith("c_") and self.is_lstm) else "H_out"
            out.append(self.layout.torch_name(f))
        if out == ["num_layers", "D"]:
            out = ["D", "num_layers"]  # PyTorch writes D*num_layers
        return "*".join(out)

    # ---------------------------------------------------------------- concrete shapes
    def bindings(self, T: int | None = None, bs: int | None = None) -> dict[str, int | None]:
        """All named sizes: the module's own plus ``T`` and ``bs`` where given."""
        b: dict[str, int | None] = dict(self.sizes)
        b["T"] = T
        b["bs"] = bs
        return b

    def shapes(
        self,
        T: int | None = None,
        bs: int | None = None,
        *,
        batched: bool = True,
        lengths: Sequence[int] | None = None,
    ) -> dict[str, tuple[int | None, ...]]:
        """Concrete shapes for given ``T`` and ``bs`` (None where unknown).

        ``batched=False`` gives the unbatched (2-D layer / 1-D cell) forms; ``lengths`` gives a
        PackedSequence's: input data ``(sum(lengths), emb)``, ``bs = len(lengths)``.

        >>> c = Conventions("LSTM", cell=False, input_size=4, hidden_size=6, proj_size=3)
        >>> c.shapes(lengths=[5, 3, 2])["input"], c.shapes(lengths=[5, 3, 2])["c_n"]
        ((10, 4), (1, 3, 6))
        """
        b = self.bindings(T, bs)
        packed = lengths is not None
        if lengths is not None:
            if self.cell:
                raise SpecError("cells take one time step; they do not take a PackedSequence")
            b["sum(lengths)"] = sum(int(n) for n in lengths)
            b["bs"] = len(lengths)
            b["T"] = max(lengths, default=0)
        return {k: tuple(expr_size(e, b) for e in v) for k, v in self.dim_exprs(batched, packed).items()}

    def named(self, arg: str, T: int | None = None, bs: int | None = None, *, batched: bool = True,
              packed: bool = False, extra: dict[str, int | None] | None = None,
              declared: dict[str, int] | None = None) -> str:
        """One argument's shape in named dims with sizes: ``"(T=5, bs=3, emb=10)"`` (a size that contradicts the
        one ``declared`` for its name is bare: see :func:`~shapeviz.core.dimensions.format_named`)."""
        b = self.bindings(T, bs)
        if extra:
            b.update(extra)
        return format_named(self.dim_exprs(batched, packed)[arg], b, declared)

    # ---------------------------------------------------------------- text
    def _default_label(self) -> str:
        if self.declaration is not None:
            return f"{self.kind}({', '.join(f'{k}={v}' for k, v in self.declared_sizes)})"
        args = [str(self.input_size), str(self.hidden_size)]
        if self.proj_size:
            args.append(f"proj_size={self.proj_size}")
        if self.num_layers != 1:
            args.append(f"num_layers={self.num_layers}")
        if self.batch_first:
            args.append("batch_first=True")
        if self.bidirectional:
            args.append("bidirectional=True")
        return f"{self.kind}({', '.join(args)})"

    def __repr__(self) -> str:
        return f"Conventions({self.label})"

    def _repr_html_(self) -> str:  # notebooks show the teaching table (render.text's, registered by the facade)
        return show("Conventions.html", self)


def _state_names(n: int, suffix: str) -> tuple[str, ...]:
    """``h_0``, ``c_0``, then ``s2_0``, ``s3_0`` … for a declared state of ``n`` tensors (suffix 0, n or 1)."""
    return tuple(("h", "c")[i] + "_" + suffix if i < 2 else f"s{i}_{suffix}" for i in range(n))


def _dims(c: Conventions, batched: bool, packed: bool) -> dict[str, tuple[str, ...]]:
    d = c.declaration
    if d is not None:  # a declared layer has one form, the declared one
        out = {"input": d.input, **dict(zip(c.state_names, d.state, strict=True))}
        if d.output is not None and not d.cell:
            out["output"] = d.output
        return out | dict(zip(c.result_names[-len(d.state):], d.state, strict=True))
    h = "proj" if c.proj_size else "h"
    if c.cell:
        b = ("bs",) if batched else ()
        d = {"input": b + ("emb",), "h_0": b + ("h",)}
        if c.is_lstm:
            d["c_0"] = b + ("h",)
        d["h_1"] = d["h_0"]
        if c.is_lstm:
            d["c_1"] = d["c_0"]
        return d
    if packed:
        seq: tuple[str, ...] = ("sum(lengths)",)
    elif not batched:
        seq = ("T",)
    else:
        seq = ("bs", "T") if c.layout.batch_first else ("T", "bs")
    state_b = ("bs",) if batched else ()
    d = {"input": seq + ("emb",), "h_0": ("layers*D",) + state_b + (h,)}
    if c.is_lstm:
        d["c_0"] = ("layers*D",) + state_b + ("h",)
    d["output"] = seq + (f"D*{h}",)
    d["h_n"] = d["h_0"]
    if c.is_lstm:
        d["c_n"] = d["c_0"]
    return d


# module -> (its configuration, its Conventions, how the configuration was read: key_getter's pair)
_cache: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, Conventions, Callable[[Any], tuple], bool]] = (
    weakref.WeakKeyDictionary())


_LAYER_CONFIG = ("mode", "input_size", "hidden_size", "num_layers", "bidirectional", "batch_first", "proj_size")
_CELL_CONFIG = ("input_size", "hidden_size")


STYLES = ("named", "torch")
"""The notations of a table: shapeviz's dim names (T, bs, emb, h, layers, D, proj) or PyTorch's docs' (L, N, H_in …)."""


def style_of(style: str) -> str:
    """A notation's name, checked: ``"named"`` or ``"torch"`` (``"seeds"``, its old name, still works, with a
    DeprecationWarning).

    >>> style_of("torch")
    'torch'
    """
    if style == "seeds":
        import warnings

        warnings.warn("style='seeds' is now style='named' (shapeviz's dim names T, bs, emb, h)", DeprecationWarning,
                      stacklevel=3)
        return "named"
    if style not in STYLES:
        raise SpecError(f"style must be one of {', '.join(map(repr, STYLES))}, got {style!r}")
    return style


def key_getter(module: nn.Module) -> tuple[Callable[[Any], tuple], bool]:
    """How to read the configuration a module's conventions depend on, read as torch reads it (``getattr``).

    Returns ``(getter, from_dict)``: when every setting is a plain instance attribute (the usual case), the
    getter is an ``itemgetter`` over ``module.__dict__`` (``from_dict``, cheaper); a setting defined on the
    class (a property, as some subclasses do) makes it an ``attrgetter`` over the module.

    >>> getter, from_dict = key_getter(nn.GRUCell(4, 6))
    >>> getter(nn.GRUCell(4, 6).__dict__), from_dict
    ((4, 6), True)
    """
    names = _CELL_CONFIG if isinstance(module, CELL_TYPES) else _LAYER_CONFIG
    d, cls = module.__dict__, type(module)
    if all(n in d and not hasattr(cls, n) for n in names):
        return itemgetter(*names), True
    return attrgetter(*names), False


def _family(module: nn.Module) -> tuple[str, bool]:
    for fam, layer, cell in zip(FAMILIES, LAYER_TYPES, CELL_TYPES, strict=True):
        if isinstance(module, layer):
            return fam, False
        if isinstance(module, cell):
            return fam, True
    valid = ", ".join(f"nn.{n}" for n in CLASS_NAMES)
    raise SpecError(f"{type(module).__name__} is not a recurrent module shapeviz knows; "
                    f"valid: {valid} (and their subclasses)")


def conventions(module: nn.Module | Conventions) -> Conventions:
    """The :class:`Conventions` of an ``nn.RNN/LSTM/GRU`` or ``*Cell`` (or a subclass).

    >>> import torch.nn as nn
    >>> conventions(nn.RNNCell(8, 16)).shapes(bs=4)
    {'input': (4, 8), 'h_0': (4, 16), 'h_1': (4, 16)}
    """
    if isinstance(module, Conventions):
        return module
    if not isinstance(module, nn.Module):
        raise SpecError(f"expected an nn.Module or Conventions, got {type(module).__name__}")
    if not isinstance(module, RECURRENT_TYPES):
        decl = declaration_of(type(module))
        if decl is not None:
            return _declared(module, decl)
    hit = _cache.get(module)
    try:
        if hit is not None and hit[2](module.__dict__ if hit[3] else module) == hit[0]:
            return hit[1]  # the configuration it was built from, read as it was read then
    except KeyError:  # a setting no longer in the instance's __dict__: read it afresh below
        pass
    fam, cell = _family(module)
    getter, from_dict = key_getter(module)
    key = getter(module.__dict__ if from_dict else module)
    try:
        label = f"{type(module).__name__}({module.extra_repr()})"
    except (KeyError, AttributeError, ValueError):  # torch's extra_repr formats __dict__: a property is not there
        label = ""  # the default label, built from the settings below
    m: Any = module  # read as torch reads them (attributes: a subclass may make one a property)
    conv = Conventions(
        family=fam,
        cell=cell,
        input_size=int(m.input_size),
        hidden_size=int(m.hidden_size),
        num_layers=1 if cell else int(m.num_layers),
        bidirectional=False if cell else bool(m.bidirectional),
        batch_first=False if cell else bool(m.batch_first),
        proj_size=0 if cell else int(getattr(m, "proj_size", 0) or 0),
        label=label,
    )
    _cache[module] = (key, conv, getter, from_dict)
    return conv


def is_recurrent(module: object) -> bool:
    """True for the six recurrent module types and their subclasses, and for classes declared with
    ``sv.recurrent``."""
    return isinstance(module, RECURRENT_TYPES) or declaration_of(type(module)) is not None


def _declared(module: nn.Module, decl: Declaration) -> Conventions:
    """The Conventions a declared module compiles to: torch's own where the declaration describes them
    (checked, explained and drawn as that family, under the module's class name), else the declaration's dims."""
    sizes = decl.sizes_of(module)
    key = (decl, tuple(sizes.items()))
    hit = _cache.get(module)
    if hit is not None and hit[0] == key:
        return hit[1]
    conv = declared_conventions(decl, sizes)
    _cache[module] = (key, conv, _no_getter, False)
    return conv


def declared_conventions(decl: Declaration, sizes: dict[str, int]) -> Conventions:
    """The Conventions of a declaration with its sizes read: torch's own (under the class's name) where it
    describes them, else the declaration's dims.

    >>> from shapeviz.core.declared import Declaration
    >>> d = Declaration("Mine", ("T", "bs", "emb"), (("bs", "h"),), False, None, True, (("emb", "a"), ("h", "b")))
    >>> declared_conventions(d, {"emb": 3, "h": 4}).shapes(T=5, bs=2)["h_0"]
    (2, 4)
    """
    return _torch_like(decl, sizes) or _generic(decl, sizes)


def _no_getter(_: Any) -> tuple:
    return ()  # a declared module's key is its read sizes, compared in _declared


def _generic(decl: Declaration, sizes: dict[str, int]) -> Conventions:
    size = {k: v for k, v in sizes.items()}
    bf = not decl.cell and decl.input.index("bs") < decl.input.index("T")
    return Conventions(
        family="LSTM" if len(decl.state) == 2 else "RNN", cell=decl.cell,
        input_size=expr_size(decl.input[-1], size) or 0, hidden_size=expr_size(decl.state[0][-1], size) or 0,
        batch_first=bf, name=decl.cls_name, declaration=decl, declared_sizes=tuple(sizes.items()))


def _torch_like(decl: Declaration, sizes: dict[str, int]) -> Conventions | None:
    """Torch's Conventions with the declared class's name, when the declaration names exactly torch's dims
    (``"T bs emb"`` / ``("layers*D bs h", "layers*D bs h")``, a cell's ``"bs emb"`` / ``"bs h"`` …); else None."""
    arity = len(decl.state)
    if (arity == 2) != decl.state_tuple or arity > 2 or "emb" not in sizes or "h" not in sizes:
        return None
    D = sizes.get("D", 1)
    if D not in (1, 2) or (decl.cell and set(sizes) - {"emb", "h"}):
        return None
    bf = not decl.cell and decl.input.index("bs") < decl.input.index("T")
    try:
        conv = Conventions("LSTM" if arity == 2 else "RNN", cell=decl.cell, input_size=sizes["emb"],
                           hidden_size=sizes["h"], num_layers=1 if decl.cell else sizes.get("layers", 1),
                           bidirectional=D == 2, batch_first=bf, proj_size=sizes.get("proj", 0),
                           name=decl.cls_name)
    except SpecError:
        return None
    want = conv.dim_exprs()
    same = want["input"] == decl.input and all(want[n] == d for n, d in zip(conv.state_names, decl.state))
    if decl.output is not None and not decl.cell:
        same = same and want["output"] == decl.output
    named = set(sizes) <= {"emb", "h", "layers", "D", "proj"}
    return conv if same and named else None


def module_weight(module: nn.Module, layout: Layout) -> Any:
    """The tensor whose dtype and device are the module's: torch's first input weight, or, for a declared
    layer, its first floating-point parameter (None when it has none).

    >>> module_weight(nn.GRUCell(2, 3), conventions(nn.GRUCell(2, 3)).layout).shape
    torch.Size([9, 2])
    """
    name = layout.weight_name
    w = module._parameters.get(name) if name else None
    if w is None and name and hasattr(module, name):
        return getattr(module, name)
    if w is None:
        w = next((p for p in module.parameters() if p.is_floating_point() or p.is_complex()), None)
    return w
