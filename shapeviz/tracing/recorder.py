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
import functools
import inspect
import json
import linecache
import os
import sys
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence
from torch.overrides import TorchFunctionMode

from shapeviz._errors import SpecError
from shapeviz.core.dimensions import declared, parse_names, pop, push
from shapeviz.core.frames import is_library, is_torch
from shapeviz.core.model import Conventions, conventions, is_recurrent

__all__ = ["SCHEMA", "Call", "TensorInfo", "Trace", "trace"]

SCHEMA = "shapeviz.trace/1"
"""The ``"schema"`` value of :meth:`Trace.to_json` documents."""

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
# shapeviz's own example and reference models are traced like user code (their ops are the point)
_MAX_NOTE_CALLS = 12
_MAX_LIST = 6  # list elements of differing shapes recorded one by one before the rest is cut


# ====================================================================== records
@dataclass
class TensorInfo:
    """Shape, dtype, device and dim names of one tensor seen in a call (never the tensor).

    >>> info = TensorInfo(shape=(5, 2, 10), names=("T", "bs", "emb"), role="input")
    >>> info.format()
    '(T=5, bs=2, emb=10)'
    """

    shape: tuple[int, ...]
    names: tuple[str, ...] | None = None
    role: str = ""  # "input", "h_0", "c_0", "output", "h_n", "c_n", "h_1", "c_1"; "" elsewhere
    key: str = ""  # where it sat in the arguments/results: "0", "1.0", "hx", "0.data"
    label: str = ""  # the variable it was read from (ops): "X", "W_xh", "self.weight"
    dtype: str = "float32"
    device: str = "cpu"
    ambiguous: bool = False  # some dim's size matched two names ("T|bs")
    packed: str = ""  # "data" or "batch_sizes" for the two halves of a PackedSequence
    repeat: int = 1  # a list of `repeat` tensors of this shape, recorded once
    produced_by: int | None = None  # index of the call that first returned this very tensor

    def format(self) -> str:
        """The shape in named dims: ``"(T=5, bs=2, 28)"`` (a dim without a name shows its size)."""
        names = self.names or ("",) * len(self.shape)
        parts = [f"{n}={s}" if n else str(s) for n, s in zip(names, self.shape)]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"

    def describe(self, with_label: bool = True) -> str:
        """``"X (bs=2, vocab=28)"``, ``"5 × (bs=2, h=8)"``, with the dtype/device when unusual."""
        text = self.format()
        if self.repeat > 1:
            text = f"{self.repeat} × {text}"
        name = self.label or self.role
        if self.packed:
            name = f"{name}.{self.packed}" if name else self.packed
        if with_label and name:
            text = f"{name} {text}"
        if self.dtype != "float32":
            text += f" {self.dtype}"
        if self.device != "cpu":
            text += f" @{self.device}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "names": None if self.names is None else list(self.names),
                "role": self.role, "key": self.key, "label": self.label, "dtype": self.dtype,
                "device": self.device, "ambiguous": self.ambiguous, "packed": self.packed,
                "repeat": self.repeat, "produced_by": self.produced_by}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorInfo:
        names = d.get("names")
        return cls(shape=tuple(int(s) for s in d["shape"]), names=None if names is None else tuple(names),
                   role=d.get("role", ""), key=d.get("key", ""), label=d.get("label", ""),
                   dtype=d.get("dtype", "float32"), device=d.get("device", "cpu"),
                   ambiguous=bool(d.get("ambiguous", False)), packed=d.get("packed", ""),
                   repeat=int(d.get("repeat", 1)), produced_by=d.get("produced_by"))


_INFIX = {"matmul": "@", "__matmul__": "@", "__rmatmul__": "@", "add": "+", "__add__": "+",
          "__radd__": "+", "sub": "-", "__sub__": "-", "mul": "*", "__mul__": "*", "__rmul__": "*",
          "div": "/", "__truediv__": "/"}


@dataclass
class Call:
    """One module call (``kind="module"``) or torch operation (``kind="op"``) of a trace.

    >>> c = Call(index=0, path="rnn", type="RNN", kind="module",
    ...          inputs=[TensorInfo((5, 2, 10), ("T", "bs", "emb"), role="input")],
    ...          outputs=[TensorInfo((5, 2, 20), ("T", "bs", "D*h"), role="output")])
    >>> c.describe()
    'input (T=5, bs=2, emb=10) → output (T=5, bs=2, D*h=20)'
    """

    index: int
    path: str  # module path ("" for the model itself); for an op, the module it ran in
    type: str  # class name ("LSTMCell") or op name ("matmul", "one_hot", ".T")
    kind: str  # "module" or "op"
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    conventions: Conventions | None = None  # set for recurrent modules
    depth: int = 0
    parent: int | None = None  # index of the enclosing module call
    source: str = ""  # "model.py:14" for ops (your file and line)
    code: str = ""  # the source line's text, stripped
    params: str = ""  # an op's non-tensor arguments: "28", "dim=0"
    error: str = ""  # "RuntimeError: …" for the call that raised (traces in exception notes)

    @property
    def name(self) -> str:
        """The path (or the type for the model itself / an op)."""
        return self.path or self.type

    def describe(self) -> str:
        """``"X (bs=2, vocab=28) @ W_xh (vocab=28, h=512) → (bs=2, h=512)"``."""
        ins = [i.describe() for i in self.inputs]
        if self.kind == "op":
            sym = _INFIX.get(self.type)
            if sym and len(ins) == 2:
                left = f"{ins[0]} {sym} {ins[1]}"
            elif self.type == "__getitem__" and self.inputs:  # x[:, t] (the index is not kept)
                left = f"{ins[0]}[…]" + "".join(f", {i}" for i in ins[1:])
            elif self.type.startswith(".") and len(self.inputs) == 1:  # a property: tokens.T
                i = self.inputs[0]
                left = f"{i.label}{self.type} {i.describe(with_label=False)}" if i.label \
                    else f"{self.type} {ins[0]}"
            else:
                left = f"{self.type}({', '.join(ins + ([self.params] if self.params else []))})"
            outs = [o.describe(with_label=False) for o in self.outputs]
        else:
            left = ", ".join(ins)
            outs = [o.describe() for o in self.outputs]
        right = ", ".join(outs) if outs else ("✗ raised" if self.error else "(no tensors)")
        return f"{left} → {right}"

    def signature(self) -> tuple:
        """What makes two calls 'the same step' (used to group repeated steps)."""
        return (self.kind, self.type, self.path, self.depth, self.source, self.error,
                tuple((i.shape, i.names, i.label, i.repeat) for i in self.inputs),
                tuple((o.shape, o.names, o.repeat) for o in self.outputs))

    def to_dict(self) -> dict[str, Any]:
        conv = None
        if self.conventions is not None:
            c = self.conventions
            conv = {"family": c.family, "cell": c.cell, "input_size": c.input_size,
                    "hidden_size": c.hidden_size, "num_layers": c.num_layers,
                    "bidirectional": c.bidirectional, "batch_first": c.batch_first,
                    "proj_size": c.proj_size, "label": c.label}
        return {"index": self.index, "path": self.path, "type": self.type, "kind": self.kind,
                "depth": self.depth, "parent": self.parent, "source": self.source, "code": self.code,
                "params": self.params, "error": self.error, "conventions": conv,
                "inputs": [i.to_dict() for i in self.inputs], "outputs": [o.to_dict() for o in self.outputs]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Call:
        conv = d.get("conventions")
        return cls(index=int(d["index"]), path=d["path"], type=d["type"], kind=d["kind"],
                   inputs=[TensorInfo.from_dict(i) for i in d.get("inputs", [])],
                   outputs=[TensorInfo.from_dict(o) for o in d.get("outputs", [])],
                   conventions=None if conv is None else Conventions(**conv),
                   depth=int(d.get("depth", 0)), parent=d.get("parent"), source=d.get("source", ""),
                   code=d.get("code", ""), params=d.get("params", ""), error=d.get("error", ""))


@dataclass
class Trace:
    """The calls of one forward pass, in order, with named shapes.

    >>> import torch, torch.nn as nn
    >>> t = trace(nn.LSTMCell(4, 8), torch.zeros(3, 4))
    >>> [(i.role, i.format()) for i in t.calls[0].outputs]
    [('h_1', '(bs=3, h=8)'), ('c_1', '(bs=3, h=8)')]

    ``.table()`` text, ``.to_json()`` / ``Trace.from_json()``, ``.plot()`` a matplotlib figure,
    ``.unroll()`` a diagram of its recurrent modules.
    """

    calls: list[Call]
    model: str = ""  # the model's class (or function) name
    ops: bool = False
    sizes: dict[str, list[int]] = field(default_factory=dict)  # every named size the trace knows
    error: str = ""  # set on the partial trace of a forward that raised

    # ------------------------------------------------------------ queries
    def modules(self) -> list[Call]:
        """The module calls (no ops)."""
        return [c for c in self.calls if c.kind == "module"]

    def find(self, path: str | None = None, type: str | None = None) -> list[Call]:
        """Calls with this path and/or type: ``t.find(type="matmul")``."""
        return [c for c in self.calls if (path is None or c.path == path) and (type is None or c.type == type)]

    def __len__(self) -> int:
        return len(self.calls)

    def __repr__(self) -> str:
        n_ops = sum(c.kind == "op" for c in self.calls)
        return f"Trace({self.model}: {len(self.calls) - n_ops} module calls, {n_ops} ops)"

    def __str__(self) -> str:
        return self.table()

    # ------------------------------------------------------------ renderers
    def _repr_html_(self) -> str:
        """Notebooks: the text table in a <pre> block."""
        from html import escape

        return f"<pre>{escape(self.table())}</pre>"

    def table(self, *, group: bool = True, max_rows: int | None = None) -> str:
        """A deterministic text table, repeated steps grouped ``× T``
        (see :func:`shapeviz.render.table.trace_table`)."""
        from shapeviz.render.table import trace_table
        return trace_table(self, group=group, max_rows=max_rows)

    def plot(self, **kw: Any) -> Any:
        """A matplotlib Figure of the shape flow (see :func:`shapeviz.render.plot.plot_trace`)."""
        from shapeviz.render.plot import plot_trace
        return plot_trace(self, **kw)

    def unroll(self, **kw: Any) -> Any:
        """The unrolled-time diagram of the traced recurrent modules (``shapeviz.render.unrolled``)."""
        from shapeviz.render.unrolled import unroll
        return unroll(self, **kw)

    # ------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "model": self.model, "ops": self.ops,
                "sizes": {k: list(v) for k, v in self.sizes.items()}, "error": self.error,
                "calls": [c.to_dict() for c in self.calls]}

    def to_json(self, indent: int | None = 1) -> str:
        """The trace as JSON; ``Trace.from_json(t.to_json()) == t``.

        >>> import torch, torch.nn as nn
        >>> t = trace(nn.RNNCell(4, 8), torch.zeros(3, 4))
        >>> Trace.from_json(t.to_json()) == t
        True

        Schema ``"shapeviz.trace/1"``::

            {"schema": "shapeviz.trace/1", "model": str, "ops": bool, "error": str,
             "sizes": {name: [int, ...]},          # every named size the trace knows
             "calls": [{
                "index": int, "path": str, "type": str, "kind": "module" | "op",
                "depth": int, "parent": int | null,  # index of the enclosing module call
                "source": str, "code": str,          # ops: "file.py:LINE" and that line's text
                "params": str, "error": str,         # an op's non-tensor args; what a call raised
                "conventions": null | {"family", "cell", "input_size", "hidden_size",
                                       "num_layers", "bidirectional", "batch_first",
                                       "proj_size", "label"},
                "inputs" / "outputs": [{
                    "shape": [int], "names": [str] | null,   # "" = unnamed dim, "a|b" = ambiguous
                    "role": str, "key": str, "label": str, "dtype": str, "device": str,
                    "ambiguous": bool, "packed": "" | "data" | "batch_sizes", "repeat": int,
                    "produced_by": int | null}]}]}   # the call that first returned this tensor
        """
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Trace:
        """Read a trace written by :meth:`to_json` (same schema, checked)."""
        d = json.loads(text)
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise SpecError(f"not a shapeviz trace: expected schema {SCHEMA!r}, got {got!r}")
        return cls(calls=[Call.from_dict(c) for c in d["calls"]], model=d.get("model", ""),
                   ops=bool(d.get("ops", False)), sizes={k: [int(x) for x in v] for k, v in d["sizes"].items()},
                   error=d.get("error", ""))


# ====================================================================== naming
_Names = list[str | None]
_Rule = Callable[[list[TensorInfo], tuple[int, ...], "_Namer"], "_Names | None"]


class _Namer:
    """Size -> name lookups over the declared and learned sizes."""

    def __init__(self, declared_sizes: dict[str, int], learned: dict[str, set[int]]) -> None:
        self.declared = declared_sizes
        self.learned = learned
        self.order: dict[frozenset[str], tuple[str, str]] = {}
        self._simple: list[tuple[str, int]] | None = None

    def direct(self, size: int) -> list[str]:
        out = [n for n, s in self.declared.items() if s == size]
        out += [n for n, ss in self.learned.items() if size in ss and n not in out and n not in self.declared]
        return out

    def simple(self) -> list[tuple[str, int]]:
        if self._simple is None:
            pairs = [(n, s) for n, s in self.declared.items()]
            pairs += [(n, s) for n, ss in self.learned.items() if n not in self.declared for s in sorted(ss)]
            self._simple = [(n, s) for n, s in pairs if s > 1 and _is_simple(n)]
        return self._simple

    def lookup(self, size: int) -> str | None:
        names = self.direct(size)
        if names:
            return "|".join(names)
        if size <= 1:
            return None
        simple = [(n, s) for n, s in self.simple() if n in _FLATTENED]
        found: list[str] = []
        for i, (a, sa) in enumerate(simple):
            for b, sb in simple[i:]:
                if a != b and sa * sb == size:
                    x, y = self.order.get(frozenset((a, b)), (a, b))
                    name = f"{x}*{y}"
                    if name not in found:
                        found.append(name)
        return "|".join(found) if found else None

    def count_name(self, n: int) -> str | None:
        names = self.direct(n)
        return names[0] if len(names) == 1 and _is_simple(names[0]) else None

    def saw(self, names: Sequence[str]) -> None:
        simple = [n for n in names if _is_simple(n)]
        for i, a in enumerate(simple):
            for b in simple[i + 1:]:
                if a != b:
                    self.order[frozenset((a, b))] = (a, b)


# By size alone, only a flattened time-and-batch dim (T*bs, reshape(-1, ·) of a sequence) is named
# as a product; other products (2*h = 12 = bs*emb) are too often coincidences to name.
_FLATTENED = frozenset({"T", "bs"})


@functools.lru_cache(maxsize=1024)
def _is_simple(name: str) -> bool:
    return bool(name) and not any(ch in name for ch in "*|()")


# How a TensorInfo gets its names, resolved after the forward pass (when every size is known):
#   ("exact", names) | ("alias", info) | ("rule", rule, inputs) | ("like", inputs) | ("size",)
_How = tuple


class _Resolver:
    def __init__(self, namer: _Namer, hows: dict[int, tuple[TensorInfo, _How]]) -> None:
        self.namer = namer
        self.hows = hows
        self.done: set[int] = set()

    def resolve(self, info: TensorInfo) -> None:
        if id(info) in self.done:
            return
        self.done.add(id(info))
        how = self.hows.get(id(info), (info, ("size",)))[1]
        names: _Names | None = None
        kind = how[0]
        if kind == "exact":
            names = list(how[1])
        elif kind == "alias":
            src: TensorInfo = how[1]
            self.resolve(src)
            if src.shape == info.shape and src.names is not None:
                names = list(src.names)
        elif kind in ("rule", "like"):
            ins: list[TensorInfo] = how[-1]
            for i in ins:
                self.resolve(i)
            if kind == "rule":
                try:
                    names = how[1](ins, info.shape, self.namer)
                except (IndexError, ValueError, TypeError, KeyError):
                    names = None
                if names is not None and len(names) != len(info.shape):
                    names = None
            if names is None:
                names = _like(ins, info.shape)
        if names is None:
            names = [None] * len(info.shape)
        final = [n if n else self.namer.lookup(s) for n, s in zip(names, info.shape)]
        if any(final):
            info.names = tuple(n or "" for n in final)
            info.ambiguous = any("|" in n for n in info.names)
            self.namer.saw(info.names)


def _like(ins: list[TensorInfo], shape: tuple[int, ...]) -> _Names | None:
    """Names from an input: one of the same shape, else one whose leading or trailing dims match."""
    named = [i for i in ins if i.names is not None]
    for i in named:
        if i.shape == shape:
            return list(i.names or ())
    for i in named:
        n = len(shape)
        if 0 < n <= len(i.shape) and i.shape[len(i.shape) - n:] == shape:  # x[t]: trailing dims
            return list((i.names or ())[len(i.shape) - n:])
    if named:
        first = named[0]
        assert first.names is not None
        return [first.names[k] if k < len(first.shape) and first.shape[k] == s else None
                for k, s in enumerate(shape)]
    return None


# ---------------------------------------------------------------- op rules
def _nm(info: TensorInfo) -> _Names:
    return list(info.names) if info.names is not None else [None] * len(info.shape)


def _rule_permute(order: Sequence[int]) -> _Rule:
    def rule(ins: list[TensorInfo], shape: tuple[int, ...], namer: _Namer) -> _Names:
        src = _nm(ins[0])
        return [src[d] for d in order]
    return rule


def _rule_transpose(d0: int, d1: int) -> _Rule:
    def rule(ins: list[TensorInfo], shape: tuple[int, ...], namer: _Namer) -> _Names:
        src = _nm(ins[0])
        a, b = d0 % len(src), d1 % len(src)
        src[a], src[b] = src[b], src[a]
        return src
    return rule


def _rule_reverse(ins: list[TensorInfo], shape: tuple[int, ...], namer: _Namer) -> _Names:
    return _nm(ins[0])[::-1]


def _rule_mT(ins: list[TensorInfo], shape: tuple[int, ...], namer: _Namer) -> _Names:
    src = _nm(ins[0])
    src[-1], src[-2] = src[-2], src[-1]
    return src


def _rule_matmul(ins: list[TensorInfo], shape: tuple[int, ...], namer: _Namer) -> _Names | None:
    if len(ins) != 2:
        return None
    a, b = _nm(ins[0]), _nm(ins[1])
    if len(a) < 2 or len(b) < 2:
        return None
    lead = a if len(a) >= len(b) else b
    return lead[:-2] + [a[-2], b[-1]]


def _rule_linear(ins: list[TensorInfo], shape: tuple[int, ...], namer: _Namer) -> _Names | None:
    if len(ins) < 2:
        return None
    return _nm(ins[0])[:-1] + [_nm(ins[1])[0]]


def _rule_embedding(ins: list[TensorInfo], shape: tuple[int, ...], namer: _Namer) -> _Names:
    return _nm(ins[0]) + [_nm(ins[1])[-1]]


def _rule_one_hot(ins: list[TensorInfo], shape: tuple[int, ...], namer: _Namer) -> _Names:
    return _nm(ins[0]) + [None]


def _rule_cat(dim: int) -> _Rule:
    def rule(ins: list[TensorInfo], shape: tuple[int, ...], namer: _Namer) -> _Names | None:
        first = _nm(ins[0])
        d = dim % len(first)
        out = list(first)
        count = sum(i.repeat for i in ins)
        if count == 1:
            return out
        same = all(len(i.shape) == len(first) and i.shape[d] == ins[0].shape[d] and _nm(i)[d] == first[d]
                   for i in ins)
        n = namer.count_name(count) if same else None
        out[d] = f"{n}*{first[d]}" if n and first[d] and _is_simple(first[d] or "") else None
        return out
    return rule


def _rule_stack(dim: int) -> _Rule:
    def rule(ins: list[TensorInfo], shape: tuple[int, ...], namer: _Namer) -> _Names:
        out = _nm(ins[0])
        out.insert(dim % (len(out) + 1), namer.count_name(sum(i.repeat for i in ins)))
        return out
    return rule


def _rule_unsqueeze(dim: int) -> _Rule:
    def rule(ins: list[TensorInfo], shape: tuple[int, ...], namer: _Namer) -> _Names:
        out = _nm(ins[0])
        out.insert(dim % (len(out) + 1), None)
        return out
    return rule


def _rule_reshape(ins: list[TensorInfo], shape: tuple[int, ...], namer: _Namer) -> _Names | None:
    """Merging neighbouring dims joins their names: (T, bs, vocab) -> (T*bs, vocab)."""
    src_shape, src = ins[0].shape, _nm(ins[0])
    out: _Names = []
    k, n = 0, len(src_shape)
    for size in shape:
        if size == 1:
            out.append(None)
            if k < n and src_shape[k] == 1:
                k += 1
            continue
        while k < n and src_shape[k] == 1:
            k += 1
        group, prod = [], 1
        while k < n and prod < size:
            prod *= src_shape[k]
            group.append(k)
            k += 1
        if prod != size or not group:  # a split: the rest is named by size
            return out + [None] * (len(shape) - len(out))
        parts = [src[g] for g in group]
        if len(parts) == 1:
            out.append(parts[0])
        elif all(p and _is_simple(p) for p in parts):
            out.append("*".join(p for p in parts if p))
        else:
            out.append(None)
    return out


_NO_RECORD = frozenset({
    "size", "dim", "numel", "__len__", "__iter__", "__repr__", "__format__", "__bool__", "item", "tolist",
    "__setitem__", "requires_grad_", "data_ptr", "stride", "is_contiguous", "element_size", "__hash__",
    "__index__", "__int__", "__float__", "__array__", "numpy", "get_device", "__reduce_ex__", "__deepcopy__",
    "storage_offset", "untyped_storage", "_is_view", "is_floating_point", "is_complex", "nelement",
    "ndimension", "__contains__", "__get__", "__set__", "has_names", "__torch_function__", "_version",
})
_PROPS = frozenset({"T", "mT", "H", "mH", "real", "imag"})


def _op_name(func: Any) -> str | None:
    """The name an op is shown under, or None for calls that are not worth a record."""
    name = getattr(func, "__name__", None)
    if name == "__get__":
        prop = getattr(getattr(func, "__self__", None), "__name__", None)
        return f".{prop}" if prop in _PROPS else None
    if not isinstance(name, str) or name in _NO_RECORD:
        return None
    return name


def _arg(args: Sequence[Any], kwargs: dict[str, Any], pos: int, key: str, default: Any) -> Any:
    if len(args) > pos:
        return args[pos]
    return kwargs.get(key, default)


def _op_rule(name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> _Rule | None:
    base = name.strip("_").lstrip(".")
    if base in ("matmul", "mm", "bmm", "rmatmul"):
        return _rule_matmul
    if base == "linear":
        return _rule_linear
    if base == "embedding":
        return _rule_embedding
    if base == "one_hot":
        return _rule_one_hot
    if base in ("T",):
        return _rule_reverse
    if base in ("t", "mT", "H", "mH"):
        return _rule_reverse if base == "t" else _rule_mT
    if base in ("transpose", "swapaxes", "swapdims"):
        return _rule_transpose(int(_arg(args, kwargs, 1, "dim0", 0)), int(_arg(args, kwargs, 2, "dim1", 1)))
    if base == "permute":
        dims = args[1:] if len(args) > 1 else kwargs.get("dims", ())
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = dims[0]
        return _rule_permute([int(d) for d in dims])
    if base in ("cat", "concat", "concatenate"):
        return _rule_cat(int(_arg(args, kwargs, 1, "dim", 0)))
    if base == "stack":
        return _rule_stack(int(_arg(args, kwargs, 1, "dim", 0)))
    if base == "unsqueeze":
        return _rule_unsqueeze(int(_arg(args, kwargs, 1, "dim", 0)))
    if base in ("reshape", "view", "flatten"):
        return _rule_reshape
    return None


def _params(args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    """A short text of an op's non-tensor arguments: ``"28"``, ``"dim=0"``, ``"-1, 28"``."""
    def ok(v: Any) -> bool:
        if isinstance(v, (bool, int, float, str, torch.dtype)) or v is None:
            return True
        return isinstance(v, (tuple, list, torch.Size)) and len(v) <= 6 and all(
            isinstance(x, (int, float)) for x in v)

    def fmt(v: Any) -> str:
        if isinstance(v, torch.dtype):
            return str(v).replace("torch.", "")
        if isinstance(v, torch.Size):
            return str(tuple(v))
        return repr(v)

    parts = [fmt(a) for a in args if not _has_tensor(a) and ok(a)]
    parts += [f"{k}={fmt(v)}" for k, v in kwargs.items() if not _has_tensor(v) and ok(v)]
    text = ", ".join(parts)
    return text if len(text) <= 40 else text[:39] + "…"


def _has_tensor(obj: Any) -> bool:
    if isinstance(obj, (torch.Tensor, PackedSequence)):
        return True
    if isinstance(obj, (tuple, list)):
        return any(_has_tensor(x) for x in obj)
    if isinstance(obj, dict):
        return any(_has_tensor(x) for x in obj.values())
    return False


# ====================================================================== flattening
def _flatten(obj: Any, key: str, depth: int = 0, tuples: bool = False) -> Iterable[tuple[str, Any, str]]:
    """(key, tensor, packed-part) for every tensor in nested tuples/lists/dicts/PackedSequences.

    A list of tensors (and with ``tuples=True`` a tuple) yields ``(key, (first, count), "")`` for
    each run of equal shapes, so ``cat`` of T step outputs is one record with ``repeat=T``."""
    if isinstance(obj, torch.Tensor):
        yield key, obj, ""
    elif isinstance(obj, PackedSequence):
        yield _join(key, "data"), obj.data, "data"
        yield _join(key, "batch_sizes"), obj.batch_sizes, "batch_sizes"
    elif isinstance(obj, (tuple, list)) and depth < 4:
        k = 0
        emitted = 0
        while k < len(obj):
            item = obj[k]
            if isinstance(item, torch.Tensor):
                j = k + 1
                if isinstance(obj, list) or tuples:
                    while j < len(obj) and isinstance(obj[j], torch.Tensor) and obj[j].shape == item.shape \
                            and obj[j].dtype == item.dtype:
                        j += 1
                if j - k > 1:
                    yield _join(key, f"{k}:{j}"), (item, j - k), ""
                else:
                    yield _join(key, str(k)), item, ""
                emitted += 1
                k = j
            else:
                yield from _flatten(item, _join(key, str(k)), depth + 1, tuples)
                emitted += 1
                k += 1
            if emitted >= _MAX_LIST:
                break
    elif isinstance(obj, dict) and depth < 4:
        for i, (k2, v) in enumerate(obj.items()):
            if i >= _MAX_LIST:
                break
            yield from _flatten(v, _join(key, str(k2)), depth + 1, tuples)


def _join(key: str, part: str) -> str:
    return f"{key}.{part}" if key else part


_DTYPE_NAMES: dict[torch.dtype, str] = {}


def _dtype(t: torch.Tensor) -> str:
    d = t.dtype
    name = _DTYPE_NAMES.get(d)
    if name is None:
        name = _DTYPE_NAMES[d] = str(d).replace("torch.", "")
    return name


def _device(t: torch.Tensor) -> str:
    d = t.device
    return d.type if d.index is None or d.type == "cpu" else f"{d.type}:{d.index}"


# ====================================================================== the tracer
class _Tracer:
    """Collects Calls during one forward; holds tensors only through weak references."""

    def __init__(self, ops: bool, declared_sizes: dict[str, int]) -> None:
        self.ops = ops
        self.calls: list[Call] = []
        self.stack: list[tuple[Call, int, bool]] = []  # open module calls: (call, id(module), user code?)
        self.pending: list[TensorInfo] = []  # in the order they were seen
        self.hows: dict[int, tuple[TensorInfo, _How]] = {}
        self.out_of: dict[int, int] = {}  # id(output info) -> index of its call
        self.seen: dict[int, tuple[weakref.ref, TensorInfo]] = {}
        self.declared = dict(declared_sizes)
        self.learned: dict[str, set[int]] = {}
        self.failed: Call | None = None
        self.busy = False

    # ------------------------------------------------------------ tensors -> infos
    def _known(self, t: torch.Tensor) -> TensorInfo | None:
        hit = self.seen.get(id(t))
        if hit is not None and hit[0]() is t:
            return hit[1]
        return None

    def _remember(self, t: torch.Tensor, info: TensorInfo) -> None:
        with contextlib.suppress(TypeError):  # not weak-referenceable: just not remembered
            self.seen[id(t)] = (weakref.ref(t), info)

    def info(self, t: torch.Tensor, how: _How | None, *, key: str = "", role: str = "", label: str = "",
             packed: str = "", repeat: int = 1, remember: bool = True) -> TensorInfo:
        info = TensorInfo(shape=tuple(int(s) for s in t.shape), role=role, key=key, label=label,
                          dtype=_dtype(t), device=_device(t), packed=packed, repeat=repeat)
        prev = self._known(t)
        if prev is not None:
            info.produced_by = self.out_of.get(id(prev))
        if how is None:
            how = ("alias", prev) if prev is not None else ("size",)
        self.pending.append(info)
        self.hows[id(info)] = (info, how)
        if how[0] == "exact" and prev is not None and id(prev) in self.hows \
                and self.hows[id(prev)][1][0] != "exact":
            self.hows[id(prev)] = (prev, ("alias", info))  # a module's conventions name it better
        if remember and (how[0] == "exact" or prev is None):
            self._remember(t, info)
        return info

    def infos(self, obj: Any, key: str, how: Callable[[str, torch.Tensor, str], _How | None],
              labels: dict[int, str] | None = None, remember: bool = True, tuples: bool = False,
              arg_names: Sequence[str] = ()) -> list[TensorInfo]:
        out = []
        for k, t, packed in _flatten(obj, key, tuples=tuples):
            repeat = 1
            if isinstance(t, tuple):
                t, repeat = t
            label = labels.get(id(t), "") if labels else ""
            if arg_names and not label:
                label = _arg_label(k, arg_names)
            out.append(self.info(t, how(k, t, packed), key=k, label=label, packed=packed, repeat=repeat,
                                 remember=remember))
        return out

    # ------------------------------------------------------------ module calls
    def enter(self, path: str, module: Any, args: tuple, kwargs: dict[str, Any], user: bool) -> None:
        with _off():
            self._enter(path, module, args, kwargs, user)

    def exit(self, module: Any, output: Any) -> None:
        with _off():
            self._exit(module, output)

    def _enter(self, path: str, module: Any, args: tuple, kwargs: dict[str, Any], user: bool) -> None:
        self.busy = True
        try:
            parent = self.stack[-1][0] if self.stack else None
            conv = conventions(module) if is_recurrent(module) else None
            call = Call(index=len(self.calls), path=path, type=_type_name(module), kind="module",
                        conventions=conv, depth=len(self.stack),
                        parent=parent.index if parent is not None else None)
            self.calls.append(call)
            self.stack.append((call, id(module), user))
            if conv is not None:
                call.inputs = self._recurrent(conv, args, kwargs, inputs=True)
            else:
                call.inputs = self.infos(args, "", lambda k, t, p: None, arg_names=_forward_params(module))
                if kwargs:
                    call.inputs += self.infos(kwargs, "", lambda k, t, p: None, arg_names=("*",))
        finally:
            self.busy = False

    def _exit(self, module: Any, output: Any) -> None:
        self.busy = True
        try:
            while self.stack and self.stack[-1][1] != id(module):
                self.stack.pop()  # a call that raised inside a try/except of the user's
            if not self.stack:
                return
            call, _, _ = self.stack.pop()
            if call.conventions is not None:
                call.outputs = self._recurrent(call.conventions, output, {}, inputs=False)
            else:
                ins = list(call.inputs)
                call.outputs = self.infos(output, "", lambda k, t, p: ("like", ins) if self._known(t) is None
                                          else None)
            for o in call.outputs:
                self.out_of.setdefault(id(o), call.index)
        finally:
            self.busy = False

    def _recurrent(self, conv: Conventions, obj: Any, kwargs: dict[str, Any], inputs: bool) -> list[TensorInfo]:
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
        ref = first if inputs or not conv.cell else None
        if not inputs and conv.cell:
            packed, batched = False, None  # decided from the results' ndim below
        else:
            packed = isinstance(ref, PackedSequence)
            batched = packed or (isinstance(ref, torch.Tensor) and ref.dim() == (2 if conv.cell else 3))
        infos: list[TensorInfo] = []
        dims_cache: dict[bool, dict[str, tuple[str, ...]]] = {}
        for key, value, roles in top:
            if value is None:
                continue
            items = list(_flatten(value, key))
            for n, (k, t, part) in enumerate(items):
                if isinstance(t, tuple):
                    t = t[0]
                role = roles[min(n, len(roles) - 1)] if part == "" else roles[0]
                b = bool(batched if batched is not None else t.dim() == 2)
                dims = dims_cache.get(b)
                if dims is None:
                    dims = dims_cache[b] = conv.dims(batched=b, packed=packed)
                names: tuple[str, ...] | None
                if part == "batch_sizes":
                    names = ("T",)
                else:
                    names = dims.get(role)
                    if names is not None and len(names) != t.dim():
                        names = None
                info = self.info(t, ("exact", names) if names else None, key=k, role=role, packed=part)
                infos.append(info)
                if names:
                    self._learn(names, info.shape, conv)
        for name, size in conv.sizes.items():
            if name in ("emb", "h", "proj"):
                self._learn1(name, size)
        return infos

    def _learn(self, names: Sequence[str], shape: Sequence[int], conv: Conventions) -> None:
        local = dict(conv.sizes)
        for n, s in zip(names, shape):
            if _is_simple(n):
                local[n] = s
                self._learn1(n, s)
        for n, s in zip(names, shape):
            if n.startswith("sum("):
                self._learn1(n, s)
            elif "*" in n:
                factors = [local.get(f) for f in n.split("*")]
                if all(f is not None and f > 1 for f in factors):
                    self._learn1(n, s)

    def _learn1(self, name: str, size: int) -> None:
        if name not in self.declared:
            self.learned.setdefault(name, set()).add(int(size))

    # ------------------------------------------------------------ ops
    def user_code(self) -> bool:
        return not self.stack or self.stack[-1][2]

    def record_op(self, name: str, func: Any, args: tuple, kwargs: dict[str, Any], out: Any,
                  frame: FrameType | None) -> None:
        self.busy = True
        try:
            call = self._op_call(name, args, kwargs, frame)
            rule = _op_rule(name, args, kwargs)
            ins = list(call.inputs)
            if rule is not None:
                call.outputs = self.infos(out, "", lambda k, t, p: ("rule", rule, ins), tuples=True)
            else:
                call.outputs = self.infos(out, "", lambda k, t, p: ("like", ins), tuples=True)
            for o in call.outputs:
                self.out_of.setdefault(id(o), call.index)
            self.calls.append(call)
        finally:
            self.busy = False

    def _op_call(self, name: str, args: tuple, kwargs: dict[str, Any], frame: FrameType | None) -> Call:
        parent = self.stack[-1][0] if self.stack else None
        labels = _labels(frame)
        call = Call(index=len(self.calls), path=parent.path if parent is not None else "", type=name,
                    kind="op", depth=len(self.stack), parent=parent.index if parent is not None else None,
                    params=_params(args, kwargs))
        if frame is not None:
            call.source = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
            call.code = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
        for i, a in enumerate(args):
            call.inputs += self.infos(a, str(i), lambda k, t, p: None, labels, tuples=True)
        if kwargs:
            call.inputs += self.infos(kwargs, "", lambda k, t, p: None, labels, tuples=True)
        return call

    def op_failed(self, func: Any, args: tuple, kwargs: dict[str, Any], exc: BaseException) -> None:
        if self.busy:
            return
        self.busy = True
        try:
            name = _op_name(func) or getattr(func, "__name__", type(func).__name__)
            call = self._op_call(name, args, kwargs, _user_frame())
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
            dims = conv.dims()["input"]
            if x.dim() != len(dims):
                return None
            shapes = conv.shapes(T=int(x.shape[dims.index("T")]), bs=int(x.shape[dims.index("bs")]))
        results = ("output",) + conv.result_names[1:]
        return tuple(torch.empty(shapes[r], dtype=x.dtype, device="meta") for r in results)  # type: ignore[misc]

    # ------------------------------------------------------------ the end
    def resolve(self) -> dict[str, list[int]]:
        namer = _Namer(self.declared, self.learned)
        r = _Resolver(namer, self.hows)
        for info in self.pending:
            r.resolve(info)
        self.pending.clear()
        self.hows.clear()
        sizes = {n: [s] for n, s in self.declared.items()}
        for n, ss in self.learned.items():
            sizes.setdefault(n, sorted(ss))
        return sizes

    def close(self) -> None:
        self.seen.clear()
        self.out_of.clear()
        self.stack.clear()


_PARAMS: dict[Any, tuple[str, ...]] = {}


def _forward_params(obj: Any) -> tuple[str, ...]:
    """The names of a module's ``forward`` (or a callable's) positional parameters; cached per class."""
    key = type(obj) if isinstance(obj, nn.Module) else None
    hit = _PARAMS.get(key) if key is not None else None
    if hit is None:
        fn = obj.forward if isinstance(obj, nn.Module) else obj
        try:
            params = inspect.signature(fn).parameters.values()
            hit = tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                                 p.VAR_POSITIONAL))
        except (TypeError, ValueError):
            hit = ()
        if key is not None:
            _PARAMS[key] = hit
    return hit


def _arg_label(key: str, arg_names: Sequence[str]) -> str:
    """``"1.0"`` with parameters ``("x", "state")`` -> ``"state[0]"``; kwargs keep their key."""
    head, _, rest = key.partition(".")
    if arg_names == ("*",):
        name = head
    elif head.isdigit() and int(head) < len(arg_names):
        name = arg_names[int(head)]
    elif ":" in head or not arg_names:
        return ""
    else:
        name = arg_names[-1]  # *args
    rest = "".join(f"[{p}]" for p in rest.split(".") if p and p not in ("data", "batch_sizes"))
    return name + rest


def _type_name(obj: Any) -> str:
    if isinstance(obj, type):
        return obj.__name__
    if callable(obj) and hasattr(obj, "__name__") and not isinstance(obj, nn.Module):
        return str(obj.__name__)
    return type(obj).__name__


_WRAPPERS = tuple(os.path.join(_TORCH_DIR, *f.split("/")) for f in (
    "overrides.py", "_tensor.py", "functional.py", "nn/functional.py", "utils/_device.py",
    "_jit_internal.py", "utils/_contextlib.py", "autograd/grad_mode.py", "_compile.py"))


def _user_frame(direct: bool = False) -> FrameType | None:
    """The innermost frame outside torch and shapeviz: the line of your code that ran the op.

    ``direct=True``: None when a torch function (not just a dispatch wrapper such as
    ``Tensor.__matmul__`` or ``F.embedding``) stands between your code and the op: an op that
    ``pack_padded_sequence`` runs for you is not one of yours."""
    f: FrameType | None = sys._getframe(2)
    while f is not None:
        fn = f.f_code.co_filename
        if not is_library(fn):
            return f
        if direct and is_torch(fn) and not fn.startswith(_WRAPPERS):
            return None
        f = f.f_back
    return None


def _labels(frame: FrameType | None) -> dict[int, str]:
    """Variable names of the tensors a frame can see: its locals and ``self``'s tensors."""
    if frame is None:
        return {}
    out: dict[int, str] = {}
    loc = frame.f_locals
    for name, v in loc.items():
        if isinstance(v, torch.Tensor) and id(v) not in out:
            out[id(v)] = name
    me = loc.get("self")
    if me is not None:
        attrs = list(getattr(me, "__dict__", {}).items())
        if isinstance(me, nn.Module):
            attrs += list(me._parameters.items()) + list(me._buffers.items())
        for name, v in attrs:
            if isinstance(v, torch.Tensor) and id(v) not in out:
                out[id(v)] = f"self.{name}"
    return out


def _off() -> Any:
    """No torch-function handling (our own mode included) while a hook reads shapes."""
    return torch._C.DisableTorchFunction()


_RNN_KERNELS = frozenset({torch._VF.lstm, torch._VF.gru, torch._VF.rnn_tanh, torch._VF.rnn_relu})  # type: ignore[attr-defined]


class _OpMode(TorchFunctionMode):
    """Records torch ops run by your code (``ops=True``) and the op that raised (always)."""

    def __init__(self, tracer: _Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        tr = self.tracer
        if func in _RNN_KERNELS:
            res = tr.meta_result(func, args)
            if res is not None:
                return res
        if tr.busy or not tr.ops or not tr.user_code():
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                tr.op_failed(func, args, kwargs, exc)
                raise
        name = _op_name(func)
        try:
            out = func(*args, **kwargs)
        except Exception as exc:
            tr.op_failed(func, args, kwargs, exc)
            raise
        if name is not None and _has_tensor(out):
            frame = _user_frame(direct=True)
            if frame is not None:
                tr.record_op(name, func, args, kwargs, out, frame)
        return out


# ====================================================================== entry point
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
    for _, t, part in _flatten(list(args) + list(kwargs.values()), ""):
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
    tracer = _Tracer(ops, declared_sizes)
    if names is not None and first is not None:  # lends its names to the first input's records
        tracer._remember(first, TensorInfo(shape=tuple(int(s) for s in first.shape), names=names))

    modules = _modules(model)
    training = {id(m): (m, m.training) for _, m in modules}
    handles: list[Any] = []
    plain_root = not isinstance(model, nn.Module)
    token = push(first_sizes) if first_sizes else None
    mode = _OpMode(tracer)
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
    return Trace(calls=tracer.calls, model=_type_name(model), ops=ops, sizes=sizes)


def _annotate(exc: BaseException, tracer: _Tracer, model: Any) -> None:
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
        partial = Trace(calls=tracer.calls, model=_type_name(model), ops=tracer.ops, sizes=sizes,
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
        name = c.type if c.kind == "op" or not c.path else f"{c.path} ({c.type})"
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
