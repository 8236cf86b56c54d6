"""The records of a trace: :class:`Trace`, :class:`Call`, :class:`TensorInfo`, and their JSON.

>>> info = TensorInfo(shape=(5, 2, 10), names=("T", "bs", "emb"), role="input")
>>> Call(index=0, path="rnn", type="RNN", kind="module", inputs=[info]).kind
<CallKind.MODULE: 'module'>

Records hold shapes, dtypes, devices and names, never tensors. The recorder
(:mod:`shapeviz.tracing.recorder`) fills them; the renderers (:mod:`shapeviz.render`) read them.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from shapeviz._views import show
from shapeviz.core.model import Conventions

__all__ = ["SCHEMA", "SCHEMA_1", "Call", "CallKind", "Tag", "TensorInfo", "Trace"]

_SURROGATE = re.compile("[\ud800-\udfff]")

SCHEMA = "shapeviz.trace/2"
"""The ``"schema"`` value of :meth:`Trace.to_json` documents: repeated steps stored once (``"runs"``)."""
_FINISHING = threading.RLock()
"""Held while a trace of :func:`~shapeviz.tracing.session.trace` names and groups its records (its first read)."""

SCHEMA_1 = "shapeviz.trace/1"
"""The schema of files written before runs: every call listed (still read; :meth:`Trace.to_dict` writes it)."""


class Tag(str, Enum):
    """A closed set of string values: compares, hashes, formats and writes to JSON as its value.

    >>> f"{CallKind.OP}", CallKind.OP == "op", json.dumps(CallKind.OP)
    ('op', True, '"op"')
    """

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)


class CallKind(Tag):
    """What a :class:`Call` records: a module call or a torch operation."""

    MODULE = "module"
    OP = "op"


@dataclass(slots=True)
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
    ambiguous: bool = False  # some dim's size matched two names ("T|bs?")
    packed: str = ""  # "data" or "batch_sizes" for the two halves of a PackedSequence
    repeat: int = 1  # a list of `repeat` tensors of this shape, recorded once
    produced_by: int | None = None  # index of the call that first returned this very tensor
    # data flow: (call index, output position) of the recurrent calls whose results this tensor was
    # computed from (the very tensor, or through the modules and ops the trace saw), latest first
    flow: tuple[tuple[int, int], ...] = ()
    # the recurrent calls (indices, latest first) whose results reached it through an integer tensor computed
    # from them (argmax, topk, sampling: a token chosen and fed on), e.g. (7,); None: not recorded (no flow
    # was followed, or a trace written before tokens were)
    tokens: tuple[int, ...] | None = None
    # a PackedSequence's batch_sizes, run-length coded: ((batch size, steps), ...), e.g. ((3, 2), (2, 1))
    batch_sizes: tuple[tuple[int, int], ...] = ()
    origins: tuple[str, ...] | None = None  # per dim, where its name came from ("" where unnamed)
    # one step of a dim: x[t], x[:, t], unbind, split(1): (its name, "" unless named by evidence; its size),
    # e.g. ("T", 9); the evidence that a loop over such pieces iterates that dim
    step: tuple[str, int] | None = None
    # what a tensor whose shape shapeviz cannot describe is ("nested tensor"); "" for every other tensor
    opaque: str = ""

    def format(self) -> str:
        """The shape in named dims: ``"(T=5, bs=2, 28)"`` (a dim without a name shows its size)."""
        if self.opaque:
            return f"({self.opaque}: shape not described)"
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
                "repeat": self.repeat, "produced_by": self.produced_by,
                "flow": [list(f) for f in self.flow], "tokens": None if self.tokens is None else list(self.tokens),
                "batch_sizes": [list(r) for r in self.batch_sizes],
                "origins": None if self.origins is None else list(self.origins),
                "step": None if self.step is None else list(self.step),
                **({"opaque": self.opaque} if self.opaque else {})}


_INFIX = {"matmul": "@", "__matmul__": "@", "__rmatmul__": "@", "add": "+", "__add__": "+",
          "__radd__": "+", "sub": "-", "__sub__": "-", "mul": "*", "__mul__": "*", "__rmul__": "*",
          "div": "/", "__truediv__": "/"}


@dataclass(slots=True)
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
    kind: CallKind  # CallKind.MODULE or CallKind.OP (a plain "module" / "op" is converted)
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    conventions: Conventions | None = None  # set for recurrent modules
    depth: int = 0
    parent: int | None = None  # index of the enclosing module call
    source: str = ""  # "model.py:14" for ops (your file and line)
    code: str = ""  # the source line's text, stripped
    params: str = ""  # an op's non-tensor arguments: "28", "dim=0"
    error: str = ""  # "RuntimeError: …" for the call that raised (traces in exception notes)
    site: str = ""  # a module call: "model.py:14", the line of your code that called it
    flag: str = ""  # an event found in it: "scrambled_view: view(7, 4, -1) of e … relabels bs, T …"

    def __post_init__(self) -> None:
        if self.kind.__class__ is not CallKind:
            self.kind = CallKind(self.kind)

    @property
    def name(self) -> str:
        """The path (or the type for the model itself / an op)."""
        return self.path or self.type

    def describe(self) -> str:
        """``"X (bs=2, vocab=28) @ W_xh (vocab=28, h=512) → (bs=2, h=512)"``."""
        ins = [i.describe() for i in self.inputs]
        if self.kind is CallKind.OP:
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
        """What makes two calls 'the same step' (used to group repeated steps): the same code, module and shapes.
        Names are not part of it: a first step's state whose batch is a guess (``bs|T?`` where bs == T) is the
        same step as the next ones, whose state has its evidence."""
        return (self.kind, self.type, self.path, self.depth, self.source, self.error,
                tuple((i.shape, i.label, i.repeat) for i in self.inputs),
                tuple((o.shape, o.repeat) for o in self.outputs))

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
                "params": self.params, "error": self.error, "site": self.site, "flag": self.flag, "conventions": conv,
                "inputs": [i.to_dict() for i in self.inputs], "outputs": [o.to_dict() for o in self.outputs]}


@dataclass
class Trace:
    """The calls of one forward pass, in order, with named shapes.

    >>> import torch, torch.nn as nn
    >>> from shapeviz.tracing.session import trace
    >>> t = trace(nn.LSTMCell(4, 8), torch.zeros(3, 4))
    >>> [(i.role, i.format()) for i in t.calls[0].outputs]
    [('h_1', '(bs=3, h=8)'), ('c_1', '(bs=3, h=8)')]

    ``.table()`` text, ``.to_json()`` / ``Trace.from_json()``, ``.plot()`` a matplotlib figure,
    ``.unroll()`` a diagram of its recurrent modules. ``calls`` is a read-only sequence whose repeated steps
    (the body of a loop) are stored once, with a count (:class:`~shapeviz.tracing.runs.Calls`); a list given
    here is stored that way.
    """

    calls: Sequence[Call]
    model: str = ""  # the model's class (or function) name
    ops: bool = False
    sizes: dict[str, list[int]] = field(default_factory=dict)  # every named size the trace knows
    error: str = ""  # set on the partial trace of a forward that raised

    def __post_init__(self) -> None:
        from shapeviz.tracing.runs import Calls

        if not isinstance(self.calls, Calls):
            self.calls = Calls(self.calls)

    # ------------------------------------------------------------ finished when first read
    @classmethod
    def _unfinished(cls, finish: Callable[[], tuple[Sequence[Call], dict[str, list[int]]]], model: str,
                   ops: bool) -> Trace:
        """A trace whose ``calls`` and ``sizes`` are what ``finish()`` gives, called when either is first read:
        :func:`~shapeviz.tracing.session.trace` names and groups its records then, not inside the forward's call
        (as torch's profiler reads its events when they are asked for). ``finish`` holds records, never tensors.

        >>> t = Trace._unfinished(lambda: ([Call(0, "rnn", "RNN", CallKind.MODULE)], {"T": [5]}), "RNN", False)
        >>> t.sizes, len(t.calls), t == Trace([Call(0, "rnn", "RNN", CallKind.MODULE)], "RNN", False, {"T": [5]})
        ({'T': [5]}, 1, True)
        """
        t = cls.__new__(cls)
        t.model, t.ops, t.error = model, ops, ""
        t.__dict__["_finish"] = finish
        return t

    def __getattr__(self, name: str) -> Any:
        """``calls`` and ``sizes`` of an unfinished trace (see :meth:`_unfinished`): made on the first read."""
        if name in ("calls", "sizes") and "_finish" in self.__dict__:
            self._finished()
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _finished(self) -> None:
        from shapeviz.tracing.runs import Calls

        with _FINISHING:  # one thread finishes it; another that read it meanwhile finds it done
            finish = self.__dict__.get("_finish")
            if finish is None:
                return
            calls, sizes = finish()
            self.calls = calls if isinstance(calls, Calls) else Calls(calls)
            self.sizes = sizes
            del self.__dict__["_finish"]

    def __getstate__(self) -> dict[str, Any]:
        """What pickle and copy keep: the finished trace."""
        if "_finish" in self.__dict__:
            self._finished()
        return dict(self.__dict__)

    # ------------------------------------------------------------ queries
    def modules(self) -> list[Call]:
        """The module calls (no ops)."""
        return [c for c in self.calls if c.kind is CallKind.MODULE]

    def find(self, path: str | None = None, type: str | None = None) -> list[Call]:
        """Calls with this path and/or type: ``t.find(type="matmul")``."""
        return [c for c in self.calls if (path is None or c.path == path) and (type is None or c.type == type)]

    def __len__(self) -> int:
        return len(self.calls)

    def __repr__(self) -> str:
        n_ops = sum(c.kind is CallKind.OP for c in self.calls)
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
        return show("Trace.table", self, group=group, max_rows=max_rows)

    def plot(self, **kw: Any) -> Any:
        """A matplotlib Figure of the shape flow (see :func:`shapeviz.render.plot.plot_trace`)."""
        return show("Trace.plot", self, **kw)

    def unroll(self, **kw: Any) -> Any:
        """The unrolled-time diagram of the traced recurrent modules (``shapeviz.render.unrolled``)."""
        return show("Trace.unroll", self, **kw)

    # ------------------------------------------------------------ JSON
    def to_dict(self, runs: bool = False) -> dict[str, Any]:
        """The trace as plain data: every call listed (schema ``"shapeviz.trace/1"``), or with ``runs`` each run of
        repeated steps stored once (schema ``"shapeviz.trace/2"``, what :meth:`to_json` writes)."""
        head = {"schema": SCHEMA if runs else SCHEMA_1, "model": self.model, "ops": self.ops,
                "sizes": {k: list(v) for k, v in self.sizes.items()}, "error": self.error}
        if not runs:
            return {**head, "calls": [c.to_dict() for c in self.calls]}
        stored = getattr(self.calls, "items", None)
        items = stored() if stored is not None else list(self.calls)
        listed = [c.to_dict() for item in items for c in (item[0] if isinstance(item, tuple) else (item,))]
        return {**head, "calls": listed, "runs": [list(r) for r in getattr(self.calls, "runs", list)()]}

    def to_json(self, indent: int | None = 1) -> str:
        """The trace as JSON; ``Trace.from_json(t.to_json()) == t``.

        >>> import torch, torch.nn as nn
        >>> from shapeviz.tracing.session import trace
        >>> t = trace(nn.RNNCell(4, 8), torch.zeros(3, 4))
        >>> Trace.from_json(t.to_json()) == t
        True

        Schema ``"shapeviz.trace/2"``::

            {"schema": "shapeviz.trace/2", "model": str, "ops": bool, "error": str,
             "sizes": {name: [int, ...]},          # every named size the trace knows
             "runs": [[start, length, count]],     # repeated steps: calls start .. start+length-1 are
                                                   # listed once and stand for `count` steps; step k has
                                                   # k*length added to each call index in it (index,
                                                   # parent, produced_by, flow, tokens) that is at least
                                                   # start-length (see shapeviz.tracing.runs)
             "calls": [{
                "index": int, "path": str, "type": str, "kind": "module" | "op",
                "depth": int, "parent": int | null,  # index of the enclosing module call
                "source": str, "code": str,          # ops: "file.py:LINE" and that line's text
                "params": str, "error": str,         # an op's non-tensor args; what a call raised
                "site": str,                         # modules: "file.py:LINE" of your code that called it
                "flag": str,                         # "scrambled_view: …": a view that relabels named dims
                "conventions": null | {"family", "cell", "input_size", "hidden_size",
                                       "num_layers", "bidirectional", "batch_first",
                                       "proj_size", "label"},
                "inputs" / "outputs": [{
                    "shape": [int], "names": [str] | null,   # "" = unnamed dim, "T?" = a guess
                                                             # by size alone, "a|b?" = ambiguous
                    "role": str, "key": str, "label": str, "dtype": str, "device": str,
                    "ambiguous": bool, "packed": "" | "data" | "batch_sizes", "repeat": int,
                    "produced_by": int | null,  # the call that first returned this tensor
                    "flow": [[int, int]],       # (call, output) of recurrent calls it was computed from
                    "tokens": [int] | null,     # those whose results reached it through an integer tensor
                    "batch_sizes": [[int, int]],     # packed: (batch size, steps) runs
                    "origins": [str] | null,         # per dim: where its name came from
                                                     # ("conventions of rnn", "inputs_dims",
                                                     # "sv.name", "op transpose", "size (guess)")
                    "step": [str, int] | null,       # one step of this named dim (x[t], unbind)
                    "opaque": str}]}]}               # only for a tensor whose shape is not described:
                                                     # what it is ("nested tensor"); shape [] then

        ``"calls"`` lists each call not repeated and the first step of each run, in order (each with its
        ``index`` in the whole trace). Files of schema ``"shapeviz.trace/1"`` (every call listed, no ``runs``;
        :meth:`to_dict` still makes them) are read too; files written before ``origins`` (``step``,
        ``tokens``) existed read with them null (empty).
        A name no UTF-8 file can hold (a lone surrogate) is written as its JSON escape (``\\ud800``),
        so the text always encodes and reads back the same.
        """
        text = json.dumps(self.to_dict(runs=True), indent=indent, ensure_ascii=False)
        if _SURROGATE.search(text) is None:
            return text
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)  # only inside strings: valid JSON

    @classmethod
    def from_json(cls, text: str) -> Trace:
        """Read a trace written by :meth:`to_json`; any other text raises :class:`~shapeviz.SpecError`
        saying what is wrong and where (``calls[3].inputs[0].shape: expected …``).

        >>> Trace.from_json('{"schema": "shapeviz.trace/1", "sizes": {}, "calls": [{"index": 0}]}')
        Traceback (most recent call last):
        ...
        shapeviz.SpecError: Trace.from_json: calls[0].path: missing

        Counts and sizes are capped (:mod:`shapeviz.tracing.json_reader`; a module's sizes and
        ``num_layers`` as in :mod:`shapeviz.apps.spec`), so a crafted file cannot make a diagram
        of a million layers."""
        from shapeviz.tracing.json_reader import read_trace
        return read_trace(text)
