"""The records of the tensors a trace sees: one :class:`~shapeviz.tracing.records.TensorInfo` per appearance,
the earlier record of the same tensor found through a weak reference, and how each gets its names.

>>> import torch
>>> from shapeviz.tracing.naming import How
>>> book = TensorBook(Provenance())
>>> x = torch.zeros(5, 2, 4)
>>> first = book.info(x, How.exact(("T", "bs", "emb"), "conventions of rnn"), role="input")
>>> again = book.operand(x, "0", "x")        # the same tensor, seen again: named like its first record
>>> book.name_all(Namer({}, {}))
>>> first.names, again.names, again.label
(('T', 'bs', 'emb'), ('T', 'bs', 'emb'), 'x')

A record is named when the forward is done (:meth:`TensorBook.name_all`): a :class:`~shapeviz.tracing.naming.How`
says where its names come from. Only weak references to tensors are kept; :meth:`TensorBook.clear` lets go of
them. The book also notes which tensors are one step of a dim (``x[t]``, ``unbind``; :mod:`shapeviz.tracing.steps`).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from shapeviz.tracing.naming import BY_SIZE, DECLARED, How, Namer, Naming, Resolver, declared_names, same_names
from shapeviz.tracing.oprules import flatten
from shapeviz.tracing.provenance import Provenance
from shapeviz.tracing.records import TensorInfo
from shapeviz.tracing.sites import FrameLabels, arg_label
from shapeviz.tracing.steps import step_dim

__all__ = ["PLAIN", "TensorBook", "device_name", "dtype_name"]

_YOURS = ("sv.name", "inputs_dims")  # the origins of names you gave a tensor

PLAIN = frozenset({torch.Tensor, nn.Parameter})
"""Tensor types recorded as they are (no walk through containers)."""

_DTYPES: dict[torch.dtype, str] = {}
_DEVICES: dict[torch.device, str] = {}


def dtype_name(t: torch.Tensor) -> str:
    """``"float32"`` (cached per dtype: a hot helper).

    >>> dtype_name(torch.zeros(1, dtype=torch.int64))
    'int64'
    """
    d = t.dtype
    name = _DTYPES.get(d)
    if name is None:
        name = _DTYPES[d] = str(d).replace("torch.", "")
    return name


def device_name(t: torch.Tensor) -> str:
    """``"cpu"``, ``"cuda:0"`` (cached per device: a hot helper)."""
    d = t.device
    name = _DEVICES.get(d)
    if name is None:
        name = _DEVICES[d] = d.type if d.index is None or d.type == "cpu" else f"{d.type}:{d.index}"
    return name


class TensorBook:
    """Records of tensors, by weak reference to the tensor; names decided when the forward is done."""

    __slots__ = ("flow", "hows", "out_of", "runs", "seen", "slices", "stepped")

    def __init__(self, flow: Provenance) -> None:
        self.flow = flow  # the data flow: written into each record while it is followed
        self.seen: dict[int, tuple[weakref.ref, TensorInfo]] = {}  # id(tensor) -> the record that names it
        # the records still to be named, in the order they were made: id(record) -> (record, how); a record in
        # place of the how: named like that record (How.alias of it, as the recorder's hot path writes it)
        self.hows: dict[int, tuple[TensorInfo, How | TensorInfo]] = {}
        self.out_of: dict[int, int] = {}  # id(a call's output record) -> that call's index
        # one step of a dim (x[t], unbind, split(1)): id(piece) -> (weak ref, the source's record, the dim)
        self.slices: dict[int, tuple[weakref.ref, TensorInfo, int]] = {}
        self.stepped: list[tuple[TensorInfo, TensorInfo, int]] = []  # (a piece's record, source, dim)
        self.runs: list[tuple[TensorInfo, list[TensorInfo]]] = []  # (a run's record, its other tensors' records)

    # ------------------------------------------------------------ tensors -> records
    def known(self, t: Any) -> TensorInfo | None:
        """The record that names ``t``, if this very tensor was recorded before."""
        hit = self.seen.get(id(t))
        if hit is not None and hit[0]() is t:
            if DECLARED:
                self.named_since(t, hit[1])
            return hit[1]
        return None

    def named_since(self, t: Any, prev: TensorInfo) -> None:
        """``t``, recorded before as ``prev`` (a model's input), was named with ``sv.name`` since: its names are a
        declaration, of ``prev`` too (the user's ``S`` is not renamed ``T`` by the layer that reads it)."""
        given = declared_names(t)
        if not given:
            return
        planned = self.hows.get(id(prev))
        if planned is not None and (type(planned[1]) is not How or planned[1].names != given):
            self.hows[id(prev)] = (prev, How.exact(given, "sv.name"))

    def remember(self, t: Any, info: TensorInfo) -> None:
        try:  # noqa: SIM105 - a hot path: cheaper than contextlib.suppress
            self.seen[id(t)] = (weakref.ref(t), info)
        except TypeError:  # not weak-referenceable: just not remembered
            pass

    def produced(self, infos: Sequence[TensorInfo], index: int) -> None:
        """``infos`` are the results of call ``index``: a later record of the same tensor names it its producer."""
        out_of = self.out_of
        for o in infos:
            out_of.setdefault(id(o), index)

    def operand(self, t: torch.Tensor, key: str, label: str) -> TensorInfo:
        """The record of a plain tensor an op reads (the hot path of :meth:`info`, with no ``how``)."""
        if t.is_nested:
            return self.info(t, None, key=key, label=label)
        try:
            info = TensorInfo(tuple(t.shape), None, "", key, label, dtype_name(t), device_name(t))
        except Exception:  # a tensor subclass whose shape cannot be read
            return self.info(t, None, key=key, label=label)
        flow = self.flow
        if flow.origins:
            info.flow = flow.flow_of(t)
            info.tokens = flow.tokens_of(t)
        hit = self.seen.get(id(t))
        if hit is not None and hit[0]() is t:
            prev = hit[1]
            if DECLARED:
                self.named_since(t, prev)
            info.produced_by = self.out_of.get(id(prev))
            self.hows[id(info)] = (info, How.alias(prev))
        else:
            given = declared_names(t)
            if given:  # named with sv.name: the general path
                return self.info(t, How.exact(given, "sv.name"), key=key, label=label)
            self.hows[id(info)] = (info, BY_SIZE)
            self.remember(t, info)
        if self.slices:
            self.stepped_piece(t, info)
        return info

    def info(self, t: torch.Tensor, how: How | None, *, key: str = "", role: str = "", label: str = "",
             packed: str = "", repeat: int = 1, keep_known: bool = False) -> TensorInfo:
        """The record of ``t``, named by ``how`` once the forward is done; with no ``how`` (or with
        ``keep_known`` for a tensor recorded before) it takes the earlier record's names, else its sizes'."""
        if t.is_nested:  # its sizes differ per component: recorded as what it is, no shape
            return _opaque(t, "nested tensor", role, key, label, packed, repeat)
        try:
            info = TensorInfo(tuple(t.shape), None, role, key, label, dtype_name(t), device_name(t), False, packed,
                              repeat)
        except Exception:  # a tensor subclass whose shape cannot be read: recorded as such, never an error
            return _opaque(t, type(t).__name__, role, key, label, packed, repeat)
        flow = self.flow
        if flow.origins:
            info.flow = flow.flow_of(t)
            info.tokens = flow.tokens_of(t)
        if packed == "batch_sizes" and t.device.type == "cpu" and t.dim() == 1:
            info.batch_sizes = _runs(t.tolist())
        prev = self.known(t)
        if prev is not None:
            info.produced_by = self.out_of.get(id(prev))
            if keep_known:
                how = None
        if how is None:
            given = declared_names(t) if prev is None else None
            how = How.alias(prev) if prev is not None else How.exact(given, "sv.name") if given else BY_SIZE
        exact = how.kind is Naming.EXACT
        if exact and prev is not None:
            planned = self.hows.get(id(prev))
            kind = planned[1].kind if planned is not None and type(planned[1]) is How else None
            if planned is not None and kind is not Naming.EXACT and kind is not Naming.FILLED:
                # a module's conventions name only what the tensor's own evidence leaves unnamed: both records alike
                self.hows[id(prev)] = (prev, How.filled(planned[1], how.names, how.origin))
                how, exact = How.filled(prev, how.names, how.origin), False
            elif kind is Naming.FILLED or (planned[1].origin if planned is not None else
                                           prev.origins and prev.origins[0]) in _YOURS:
                # named by another layer's conventions and its input's evidence, or by you (sv.name, inputs_dims):
                # the tensor's own evidence, kept as it is, wins over this layer's reading of its time and batch
                how, exact = How.filled(prev, how.names, how.origin), False
        final = _exact_final(how.names) if exact else None
        if final is not None:  # every dim given a name: final now (nothing later renames an exact record)
            info.names, info.origins, info.ambiguous = how.names, (how.origin,) * len(how.names), final
        else:
            self.hows[id(info)] = (info, how)
        if exact or prev is None:
            self.remember(t, info)
        if self.slices:
            self.stepped_piece(t, info)
        return info

    def infos(self, obj: Any, key: str, how: How | None = None, *, keep_known: bool = False,
              labels: FrameLabels | None = None, tuples: bool = False,
              arg_names: Sequence[str] = ()) -> list[TensorInfo]:
        """Records of every tensor in ``obj`` (see :func:`~shapeviz.tracing.oprules.flatten`), all named by ``how``."""
        if type(obj) in PLAIN and not arg_names:  # the usual operand: one tensor, no walk
            label = labels.name_of(obj) if labels is not None else ""
            return [self.info(obj, how, key=key, label=label, keep_known=keep_known)]
        out = []
        for k, t, packed in flatten(obj, key, tuples=tuples, alike=self.alike):
            repeat, others = 1, ()
            if isinstance(t, tuple):
                t, repeat, others = t
            label = labels.name_of(t) if labels is not None else ""
            if arg_names and not label:
                label = arg_label(k, arg_names)
            out.append(self.info(t, how, key=k, label=label, packed=packed, repeat=repeat, keep_known=keep_known))
            if others:  # a run: its record names only what all of its tensors' records name alike
                self.runs.append((out[-1], [r for r in map(self.known, others) if r is not None]))
        return out

    def alike(self, a: Any, b: Any) -> bool:
        """Two equal-shaped tensors of a list made the same way (one record for the run, ``cat`` of T steps): both
        unseen, one record, or records named by the same kind of rule (a cell's T outputs); ``cat((h, ctx))`` of
        a cell's state and a pooled context is two records, each with its own names."""
        ra, rb = self.known(a), self.known(b)
        if ra is None or rb is None or ra is rb:
            return ra is rb
        ha, hb = self.hows.get(id(ra)), self.hows.get(id(rb))
        if ha is None or hb is None:
            return False
        wa, wb = ha[1], hb[1]
        if type(wa) is not How or type(wb) is not How:
            return wa is wb
        return wa.kind is wb.kind and wa.origin == wb.origin

    # ------------------------------------------------------------ steps of a dim
    def stepped_piece(self, t: Any, info: TensorInfo) -> None:
        """``info`` records ``t``: noted if ``t`` is one step of a dim (see :meth:`note_step`)."""
        hit = self.slices.get(id(t))
        if hit is not None and hit[0]() is t:
            self.stepped.append((info, hit[1], hit[2]))

    def note_step(self, func: Any, args: tuple, kwargs: dict[str, Any], out: Any) -> None:
        """``out`` is one step (or the steps) of a dim of ``args[0]`` (see :mod:`shapeviz.tracing.steps`):
        noted when the source was recorded, the evidence a loop over the pieces iterates that dim."""
        dim = step_dim(func, args, kwargs)
        src = self.known(args[0]) if dim is not None else None
        if src is None:
            return
        for piece in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(piece, torch.Tensor):
                try:
                    self.slices[id(piece)] = (weakref.ref(piece), src, int(dim))  # type: ignore[arg-type]
                except TypeError:  # not weak-referenceable
                    continue
                known = self.known(piece)
                if known is not None:
                    self.stepped.append((known, src, int(dim)))  # type: ignore[arg-type]

    # ------------------------------------------------------------ the end
    def name_all(self, namer: Namer) -> None:
        """Name every record still to be named, and say which named dim each step is one step of."""
        hows = self.hows
        resolver = Resolver(namer, hows)
        resolve = resolver.resolve
        for info, how in list(hows.values()):
            # the commonest record, the same tensor as one named already: Resolver.resolve in line
            if type(how) is TensorInfo and how.shape == info.shape and id(how) not in hows and id(info) in hows:
                del hows[id(info)]
                same_names(info, how)
            else:
                resolve(info)
        hows.clear()
        for info, others in self.runs:  # "n × (…)" claims its names for all n: a name one of them lacks goes
            if info.names is not None and others:
                keep = [all(o.names is not None and o.names[k] == n for o in others) for k, n in enumerate(info.names)]
                if not all(keep):
                    info.names = tuple(n if ok else "" for n, ok in zip(info.names, keep))
                    info.origins = tuple(o if ok else "" for o, ok in zip(info.origins or ("",) * len(keep), keep))
        self.runs.clear()
        for info, src, dim in self.stepped:  # a step of a dim, named when its name is evidence (not a guess)
            name = src.names[dim] if src.names and dim < len(src.names) else ""
            plain = bool(name) and "?" not in name and "|" not in name and "*" not in name
            info.step = (name if plain else "", int(src.shape[dim]))
        self.stepped.clear()

    def clear(self) -> None:
        """Let go of every tensor reference (the records stay)."""
        self.seen.clear()
        self.slices.clear()
        self.out_of.clear()


def _opaque(t: Any, what: str, role: str, key: str, label: str, packed: str, repeat: int) -> TensorInfo:
    """The record of a tensor whose shape shapeviz cannot describe (a nested tensor): what it is, no shape, no
    names, never remembered (nothing is named from it).

    >>> nt = torch.nested.nested_tensor([torch.zeros(2, 3), torch.zeros(4, 3)], layout=torch.jagged)
    >>> _opaque(nt, "nested tensor", "", "0", "x", "", 1).describe()
    'x (nested tensor: shape not described)'
    """
    def read(f: Any, default: str) -> str:
        try:
            return f(t)
        except Exception:
            return default

    return TensorInfo((), (), role, key, label, read(dtype_name, "?"), read(device_name, "?"), False, packed, repeat,
                      opaque=what)


@functools.lru_cache(maxsize=4096)
def _exact_final(names: tuple[str, ...]) -> bool | None:
    """For names given exactly: None unless every dim has a plain (not guessed) name, else whether one
    is ambiguous (``"T|bs"``).

    >>> _exact_final(("T", "bs", "emb")), _exact_final(("T", "")), _exact_final(("T|bs", "h"))
    (False, None, True)
    """
    if not all(names) or any(n.endswith("?") for n in names):
        return None
    return any("|" in n for n in names)


def _runs(values: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Run-length code: ``[3, 3, 2, 1, 1]`` -> ``((3, 2), (2, 1), (1, 2))``.

    >>> _runs([3, 3, 2, 1, 1])
    ((3, 2), (2, 1), (1, 2))
    """
    out: list[list[int]] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([int(v), 1])
    return tuple((a, b) for a, b in out)
