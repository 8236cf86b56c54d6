"""Flow checks (``ops=True`` in :func:`~shapeviz.watch` and :func:`~shapeviz.checking`): named dims
tracked live over every op, so the silent mistakes around a recurrent call raise or warn.

>>> import torch, torch.nn as nn
>>> rnn = nn.GRU(8, 16)
>>> with flow(inputs="bs T emb"):
...     x = torch.zeros(4, 7, 8)
...     y, h_n = rnn(x.transpose(0, 1))  # (bs, T, emb) -> (T, bs, emb): a real transpose
>>> tuple(y.shape)
(7, 4, 16)

Names come from the same places as a trace's (:mod:`shapeviz.tracing.naming`): a recurrent
module's conventions, ``inputs=`` for the outermost module call's first input, ``sv.name``, and
the op rules of :mod:`shapeviz.tracing.oprules`; a size match is never used. With that evidence:

* ``scrambled_view`` (:class:`~shapeviz.ShapeError`): a ``view``/``reshape`` that relabels named
  dims without moving data, e.g. ``e.view(T, bs, -1)`` of ``(bs, T, emb)`` (raised at the view when
  7 steps cannot split into rows of 4; when the sizes divide, where a recurrent layer reads the
  view's bs parts as its time axis), or ``y.view(T, bs, -1, 2)`` of a bidirectional ``(…, D*h)``.
  Splitting or merging dims in order never is: ``(1, bs*skip, h)`` viewed as ``(bs, skip*h)``, a
  time-major dilation ``(T, bs)`` viewed as ``(T/rate, rate*bs)``, and back
  (:mod:`shapeviz.tracing.dimparts`: merged dims carry their factors, parts of dims are named);
* ``flatten_order``: a loss whose logits rows and target rows were flattened in different orders
  (``T*bs`` vs ``bs*T``);
* warnings (:class:`~shapeviz.ShapeWarning`) ``bidirectional_last``, ``padded_last`` (also after
  ``pad_packed_sequence`` unsorts an ``enforce_sorted=False`` batch), ``bidirectional_h_n``.

A recurrent call's steps and batch are named from where its input's dims came from (a GRU fed
``(pt, bs*skip, c)`` has the batch ``bs*skip``, not ``bs``); :func:`known_names` gives other code
(the runtime's diagnosis) these names for a tensor.

Tensors are held only through weak references. The mode and the hooks are removed on every path.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules import module as module_hooks
from torch.nn.utils.rnn import PackedSequence
from torch.overrides import TorchFunctionMode

from shapeviz._errors import SpecError
from shapeviz.core.compiling import dynamo_compiling
from shapeviz.core.dimensions import parse_names
from shapeviz.core.evidence import bases_of
from shapeviz.core.model import Conventions, conventions, is_recurrent
from shapeviz.tracing.copies import ShapevizHook
from shapeviz.tracing.dimparts import (
    Pick,
    broadcasts,
    copied_names,
    joined_pick,
    mixes_directions,
    pads,
    read_as_time,
    slice_names,
    view_names,
    whole_dims,
)
from shapeviz.tracing.flowchecks import check_ctc, check_loss, check_pack, check_rows, check_time_axis, scrambled_error
from shapeviz.tracing.indexing import index_plan
from shapeviz.tracing.laststep import LastReads, moved, narrow_plan, one_index, split_dirs
from shapeviz.tracing.modestack import push_under, take_out
from shapeviz.tracing.modulerules import attention
from shapeviz.tracing.naming import Namer, Names, OpView, declared_names
from shapeviz.tracing.oprules import RESHAPES, op_name, op_params, op_rule
from shapeviz.tracing.permutes import Permutations
from shapeviz.tracing.records import TensorInfo
from shapeviz.tracing.sites import call_as_caller, dynamo_skip, first_keyword, label

__all__ = ["FlowMode", "flow", "flow_block", "known_names", "one_step", "start"]

_LOSSES = frozenset({"cross_entropy", "nll_loss"})
_KEEPS_FACTS = frozenset({"index_select", "contiguous", "clone", "detach", "to", "float", "type_as"})
"""Ops whose result is the same rows in another order or another copy: "padded" and "bidirectional"
facts survive them (``pad_packed_sequence``'s unsorting ``index_select``) unless they pick along T."""

_CUTS = frozenset({"getitem", "narrow", "view", "reshape", "unflatten", "chunk", "split", "split_with_sizes"})
_MOVES = frozenset({"transpose", "swapaxes", "swapdims", "permute", "getitem", "narrow"})  # see laststep.moved
"""Ops that may cut a step read whole to its forward half (:mod:`shapeviz.tracing.laststep`)."""
_PERMUTES = frozenset({"randperm", "argsort", "sort"})
_JOINS = frozenset({"cat", "concat", "concatenate", "stack"})
_COPIES = frozenset({"expand", "repeat", "repeat_interleave"})
_VALUES_INDICES = frozenset({"max", "min", "median", "nanmedian", "mode", "kthvalue", "sort", "topk", "cummax",
                             "cummin"})
"""Ops whose result is (values, indices), both of one shape: each named as the op's one result would be."""
_LOCAL = threading.local()  # .modes: the flow modes active in this thread, innermost last
_ACTIVE = [0]  # flow modes active in any thread: known_names returns at once when there are none
_ACTIVE_LOCK = threading.Lock()


class _Facts:
    """What the flow knows about one tensor: its names and, for recurrent results, what it is."""

    __slots__ = ("back0", "held", "looped", "mate", "names", "pick", "step", "t_axis", "taken", "what")

    def __init__(self, names: Names, what: str = "", t_axis: int = -1) -> None:
        self.names = names
        self.pick: Pick | None = None  # x[j::r], y[:, i*bs:(i+1)*bs]: the index fixed in a dim taken apart
        self.what = what  # "bi_output", "padded", "bi_h_n" or ""
        self.t_axis = t_axis
        self.taken: set[int] = set()  # the indices taken along dim 0 (h_n[-2] before h_n[-1])
        self.back0 = False  # step 0 read with its backward half: the backward direction's final state
        self.mate: _Facts | None = None  # a bidirectional output's h_n (its forward half of the last step is h_n[-2])
        self.held: tuple[int, bool] | None = None  # a step read whole: its warning's key, its directions split
        # (…, D, h) or not (laststep: a forward-half cut drops the warning)
        self.step = False  # made from one step of the model input's T (x[:, t]): its bs items are no sequence
        self.looped = False  # a cell's result for one step of the model input's T: as many are T's steps


LayerCheck = Callable[[nn.Module, Conventions, tuple, Names, Callable[[nn.Module], "str | None"]], None]
"""The runtime's check of a recurrent call by its input's names (tracing imports nothing of the runtime)."""


class FlowMode(TorchFunctionMode):
    """Tracks named dims over the ops run under it; raises or warns on the mistakes above."""

    def __init__(self, inputs: tuple[str, ...] | None = None, layer_check: LayerCheck | None = None,
                 named: nn.Module | None = None) -> None:
        super().__init__()
        self.inputs = inputs
        self.named = weakref.ref(named) if named is not None else None  # whose calls' input ``inputs`` names
        self.layer_check = layer_check  # the runtime's check of a recurrent call by its input's provenance
        self.facts: dict[int, tuple[weakref.ref, _Facts]] = {}
        self.sizes: dict[str, int] = {}
        self.depth = 0
        self.namer = Namer(self.sizes, {}, counts=True)
        self.module_sizes: dict[str, int] = {}  # the recurrent modules' own sizes: emb, h, layers, D, proj
        self.views: dict[str, tuple] = {}  # a dim name made of parts of named dims -> the view that made it
        self.root: weakref.ref | None = None  # the module called first (depth 0): paths in alarms are in it
        self.last = LastReads()  # last-step reads: warnings held back until a use decides
        self.perms = Permutations()  # permutation indices: the dim each reorders

    def flush(self) -> None:
        """Say the warnings held back (a last step read inside a model's call), now that the call is over."""
        self.last.flush()

    def size_of(self, name: str) -> int | None:
        """The size of a name seen on a tensor, else of a recurrent module's own dim (D of ``D*h``)."""
        size = self.namer.size_of(name)
        return size if size is not None else self.module_sizes.get(name)

    # ------------------------------------------------------------ tensors
    def get(self, t: Any) -> _Facts | None:
        if not isinstance(t, torch.Tensor):
            return None
        hit = self.facts.get(id(t))
        if hit is not None and hit[0]() is t:
            return hit[1]
        given = declared_names(t)
        if given is not None:
            return self.put(t, list(given), declared=True)
        return None

    def put(self, t: torch.Tensor, names: Names, what: str = "", t_axis: int = -1, declared: bool = False) -> _Facts:
        """Record ``t``'s names; a plain name's size is learned from the first tensor that has it, and taken
        afresh from a declared one (``inputs=``, ``sv.name``): the next batch of a loop in one block has its own
        bs and T (2×6, then 3×4: a merged 12 split by the first call's sizes read as scrambled)."""
        facts = _Facts(names, what, t_axis)
        with contextlib.suppress(TypeError):
            self.facts[id(t)] = (weakref.ref(t), facts)
        for n, s in zip(names, t.shape):
            if n and "*" not in n and "(" not in n and "[" not in n and not n.isdigit():
                if not declared:
                    self.sizes.setdefault(n, int(s))
                elif self.sizes.get(n) != int(s):
                    self.sizes[n] = int(s)
                    self.namer.forget()
        return facts

    def names_of(self, t: Any) -> Names | None:
        """What this flow knows of ``t``'s dims (None: nothing)."""
        f = self.get(t) if isinstance(t, torch.Tensor) else None
        return f.names if f is not None else None

    def info(self, t: Any) -> TensorInfo:
        f = self.get(t)
        shape = tuple(int(s) for s in t.shape)
        if f is None or not any(f.names):
            return TensorInfo(shape)
        return TensorInfo(shape, tuple(n or "" for n in f.names))

    # ------------------------------------------------------------ modules (global hooks)
    def pre(self, module: nn.Module, args: tuple) -> None:
        if dynamo_compiling():  # traced by dynamo: the flow stands aside (its ops are not seen either)
            return
        if self.depth == 0:
            self.root = weakref.ref(module)
        # "bs T": the leading dims of the first input of each call of the watched model (watch), else of each
        # outermost call but a bare recurrent layer's, whose own conventions say what its input is (checking)
        if self.inputs is not None \
                and (self.depth == 0 and not is_recurrent(module) if self.named is None else module is self.named()):
            first = args[0] if args else first_keyword(module)  # model(input_ids=x): a global hook gets no kwargs
            if isinstance(first, torch.Tensor) and first.dim() >= len(self.inputs) and self.get(first) is None:
                self.put(first, [*self.inputs, *[None] * (first.dim() - len(self.inputs))], declared=True)
        self.depth += 1
        if args and isinstance(args[0], torch.Tensor) and is_recurrent(module) and not _hooks_of_its_own(module):
            with torch._C.DisableTorchFunction():
                conv = conventions(module)
                f = self.get(args[0])
                if f is not None and self.size_of("bs") != 1:
                    check_time_axis(f.names, conv, args[0], self.views, lambda: self._path(module))
                if self.layer_check is not None and f is not None:
                    self.layer_check(module, conv, args, f.names, self._path)

    def _path(self, module: nn.Module) -> str | None:
        """``module``'s path in the module called first (None for that module itself or outside it)."""
        root = self.root() if self.root is not None else None
        if root is None or root is module:
            return None
        return next((name for name, m in root.named_modules() if m is module), None)

    def post(self, module: nn.Module, args: tuple, output: Any) -> None:
        if dynamo_compiling():
            return
        self.depth = max(0, self.depth - 1)
        if self.depth == 0 and self.last.pending:
            self.flush()
        if is_recurrent(module):
            with torch._C.DisableTorchFunction():
                self._name_results(conventions(module), args, output)

    def _name_results(self, conv: Conventions, args: tuple, output: Any) -> None:
        first = args[0] if args else None
        for n, size in conv.sizes.items():  # D and layers too: "D*h" splits into its factors (not cat counts)
            self.module_sizes.setdefault(n, size)
        packed = isinstance(first, PackedSequence)
        if conv.cell:
            results = output if isinstance(output, tuple) else (output,)
            batched = isinstance(first, torch.Tensor) and first.dim() == conv.layout.state_batched_ndim
            given = self._given(conv.dim_exprs(batched=batched), args)
            for role, t in zip(conv.result_names, results):
                if isinstance(t, torch.Tensor):
                    names = conv.dim_exprs(batched=t.dim() == conv.layout.state_batched_ndim).get(role)
                    if names is not None and len(names) == t.dim():
                        src = self.get(first)
                        self.put(t, [given.get(n, n) for n in names]).looped = src is not None and (src.step or
                                                                                                   src.looped)
            return
        if not isinstance(output, tuple) or len(output) != 2:
            return
        batched = packed or (isinstance(first, torch.Tensor) and conv.layout.is_batched(first.dim()) is True)
        dims = conv.dim_exprs(batched=batched, packed=packed)
        out, state = output
        states = state if isinstance(state, tuple) else (state,)
        given = self._given(dims, args) if not packed else {}
        made: _Facts | None = None
        out_dims = dims.get("output")  # a layer declared with sv.recurrent may leave its output undeclared
        if isinstance(out, torch.Tensor) and out_dims is not None and len(out_dims) == out.dim():
            t_axis = out_dims.index("T") if "T" in out_dims else -1
            made = self.put(out, [given.get(n, n) for n in out_dims], "bi_output" if conv.bidirectional else "",
                            t_axis)
        for role, t in zip(conv.result_names[1:], states):
            if isinstance(t, torch.Tensor) and role in dims and len(dims[role]) == t.dim():
                f = self.put(t, [given.get(n, n) for n in dims[role]], "bi_h_n" if conv.bidirectional and role == "h_n"
                             else "")
                if f.what and made is not None:
                    made.mate = f

    def _given(self, dims: dict[str, tuple[str, ...]], args: tuple) -> dict[str, str | None]:
        """What a recurrent call's T and bs are in the model, by where its input's (or its state's)
        dims came from: their own names (``bs*skip``, ``T[2:8]``, a beam's ``bs*3``); else its steps
        are T (the layer's own time, as its conventions say) and its batch is bs where the size fits
        (a GRU fed ``(pt, bs*skip, c)`` has a batch, but not the model's bs)."""
        hx = args[1] if len(args) > 1 else None
        hx = hx[0] if isinstance(hx, (tuple, list)) and hx else hx
        out: dict[str, str | None] = {}
        size: dict[str, int] = {}
        for role, t in (("input", args[0] if args else None), ("h_0", hx)):
            names = dims.get(role)
            if not isinstance(t, torch.Tensor) or names is None or len(names) != t.dim():
                continue
            f = self.get(t)
            for axis, n in enumerate(names):
                if n in ("T", "bs"):
                    size.setdefault(n, int(t.shape[axis]))
                    if f is not None and f.names[axis] and out.get(n) is None:
                        out[n] = f.names[axis]
        if out.get("bs") is None and "bs" in size and self.sizes.get("bs") != size["bs"]:
            out["bs"] = None  # a batch of another size (bs*skip, rate*bs, bs*k), or of a model whose bs nothing
            # named, is not (known to be) the model's bs: a layer's reading of its layout is no evidence
        return {n: v for n, v in out.items() if v is not None or n == "bs"}

    # ------------------------------------------------------------ ops
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = None if dynamo_compiling() else op_name(func)  # traced by dynamo: it stands aside
        if name is None:
            return func(*args, **kwargs)
        base = name.strip("_").lstrip(".")
        if self.last.armed:
            self.last.used(args)
        if self.last.eager and not (base in _CUTS and args and (f := self.get(args[0])) is not None and
                                    (f.held or (base == "getitem" and id(f) in self.last.eager))):
            self.last.flush(eager_only=True)  # not at a cut of the step, nor at another read of its output
        if base in _LOSSES and len(args) >= 2:
            with torch._C.DisableTorchFunction():
                check_loss(base, self.names_of(args[0]), self.names_of(args[1]), args[0], args[1])
        elif base == "ctc_loss" and args and isinstance(args[0], torch.Tensor) and args[0].dim() == 3:
            with torch._C.DisableTorchFunction():
                check_ctc(self.names_of(args[0]), args[0])
        if self.perms.seen and args and isinstance(args[0], torch.Tensor) and base in ("index_select", "getitem"):
            with torch._C.DisableTorchFunction():
                self.perms.check(name, base, args, kwargs, self.get(args[0]))
        out = call_as_caller(func, args, kwargs)
        if base in _PERMUTES:
            with torch._C.DisableTorchFunction():
                self.perms.made(base, args, out)
        if not args or not isinstance(out, torch.Tensor):
            with torch._C.DisableTorchFunction():
                if base in _VALUES_INDICES and isinstance(args[0], torch.Tensor) and isinstance(out, tuple) \
                        and len(out) == 2 and isinstance(out[0], torch.Tensor):  # x.max(dim): values, indices
                    for t in out:
                        self._after(name, base, func, args, kwargs, t)
                else:
                    self._after_many(base, args, kwargs, out)
            return out
        if base == "einsum" and isinstance(args[0], str):  # its operands follow the equation
            with torch._C.DisableTorchFunction():
                self._einsum(name, args, kwargs, out)
            return out
        if not isinstance(args[0], torch.Tensor) and not (isinstance(args[0], (list, tuple)) and args[0]
                                                          and isinstance(args[0][0], torch.Tensor)):
            return out
        with torch._C.DisableTorchFunction():
            self._after(name, base, func, args, kwargs, out)
        return out

    def _einsum(self, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        """``torch.einsum("btd->tbd", x)``: each output letter named as the operand dim it comes from."""
        ops = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
        rule = op_rule(name, args, kwargs)
        if rule is None or not ops or not all(isinstance(t, torch.Tensor) for t in ops) \
                or not any(self.get(t) is not None for t in ops):
            return
        try:
            names = rule(OpView([self.info(t) for t in ops], tuple(out.shape), self.namer))
        except (IndexError, ValueError, TypeError, KeyError, ZeroDivisionError):
            return
        if names is not None and len(names) == out.dim() and any(names):
            self.put(out, names)

    def _after_many(self, base: str, args: tuple, kwargs: dict, out: Any) -> None:
        """Ops with several results: unbind (a loop over a sequence) and pad_packed_sequence."""
        if not isinstance(out, (tuple, list)) or not out or not isinstance(out[0], torch.Tensor):
            return
        held = self.get(args[0]) if base in _CUTS and args else None
        if held is not None and held.held:  # a step read whole, split along its features
            self.last.pieces(held.held, args, kwargs, out)
        if held is not None and held.what == "bi_output" and base in ("chunk", "split", "split_with_sizes") \
                and out[0].dim() == args[0].dim() and out[0].shape[:-1] == args[0].shape[:-1]:  # fwd, bwd = chunk
            moved(held, "narrow", (args[0], -1, 0, out[0].shape[-1]), {}, args[0], out[0], self._facts_of)
        if base == "pack_padded_sequence" and args and isinstance(args[0], torch.Tensor):
            check_pack(self.names_of(args[0]), args[0],
                       bool(args[2]) if len(args) > 2 else bool(kwargs.get("batch_first", False)))
        elif base == "pad_packed_sequence":
            first = bool(args[2]) if len(args) > 2 else False  # (data, batch_sizes, batch_first, …)
            self.put(out[0], [None] * out[0].dim(), "padded" if pads(args, out[0], first) else "",
                     1 if first else 0)
        elif base == "multi_head_attention_forward" and args and isinstance(args[0], torch.Tensor):
            names = attention(OpView([self.info(args[0])], tuple(out[0].shape), self.namer))  # the output, by query
            if names is not None and any(names):
                self.put(out[0], names)
        elif base == "unbind" and args and isinstance(args[0], torch.Tensor):
            src = self.get(args[0])
            if src is not None:
                dim = int(args[1] if len(args) > 1 else kwargs.get("dim", 0)) % args[0].dim()
                names = src.names[:dim] + src.names[dim + 1:]
                if any(names):
                    for t in out:
                        self.put(t, list(names))

    def _after(self, name: str, base: str, func: Any, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        x = args[0] if isinstance(args[0], torch.Tensor) else args[0][0]
        src = self.get(x)
        held = 0
        hold = None
        if src is not None and src.held and base in _CUTS:
            hold = self.last.cut(src.held, base, x, args, kwargs, out)
        elif base == "getitem" and src is not None and src.what and len(args) > 1:
            held = self.last.index(src, x, args[1], self.depth > 0)
        elif base == "narrow" and src is not None and src.what and (plan := narrow_plan(args, kwargs)) \
                and plan[2] == 1:  # x.narrow(1, T - 1, 1): the last step, its dim kept
            held = self.last.picked(src, x, plan[0], plan[1], False, True, self.depth > 0, "narrow")
        elif base == "index_select" and src is not None and src.what and (step := one_index(args, kwargs)):
            held = self.last.picked(src, x, step[0], step[1], False, True, self.depth > 0, "index_select")
        if base in RESHAPES and src is not None:
            names, scrambled = view_names(tuple(x.shape), list(src.names), tuple(out.shape), self.size_of,
                                          pieces=True)
            if not scrambled:
                scrambled = mixes_directions(names)
            if scrambled:
                raise scrambled_error(name, label(x), tuple(x.shape), src.names, tuple(out.shape), scrambled,
                                 op_params(args[1:], kwargs))
            if any(names):
                self.put(out, names).step = src.step
                whole = whole_dims(tuple(x.shape), tuple(out.shape))  # a merge of whole dims relabels nothing
                cut = [n for n, w in zip(names, whole) if n and ("[" in n or (read_as_time(n, "T") and not w))]
                bases = set().union(*(bases_of(n) for n in cut))
                crossed = [m for m in src.names if m and bases_of(m) & bases]
                made = (name, label(x), tuple(x.shape), list(src.names), tuple(out.shape), crossed,
                        op_params(args[1:], kwargs)) if cut else ()  # no tensor kept
                for n in cut:
                    self.views[n] = made
            split_dirs(src, x, out, self._facts_of)
            if hold:
                (self.get(out) or self.put(out, [None] * out.dim())).held = hold
            return
        tensors = [a for a in args if isinstance(a, torch.Tensor)] if x is args[0] else list(args[0])
        if not any(self.get(t) is not None for t in tensors):
            return
        check_rows(name, base, args, kwargs, tensors, self.names_of)
        rule = op_rule(name, args, kwargs)
        view = OpView([self.info(t) for t in tensors], tuple(out.shape), self.namer)
        names: Names | None = None
        if base in _COPIES and src is not None:
            names = copied_names(base, tuple(x.shape), src.names, args, kwargs, tuple(out.shape))
        elif rule is not None:
            try:
                names = rule(view)
            except (IndexError, ValueError, TypeError, KeyError, ZeroDivisionError):
                names = None
        elif x.shape == out.shape:  # elementwise ops (add, tanh, dropout …) keep the first operand's names
            names = view.names(0) if self.get(x) is not None else None
        elif broadcasts(tuple(x.shape), tuple(out.shape)):  # mask * y: the operand of the result's shape names it
            full = next((k for k, t in enumerate(tensors) if t.shape == out.shape and self.get(t) is not None), None)
            names = view.names(full) if full is not None else None
        pick = None
        if base == "getitem" and src is not None and len(args) > 1 and names is not None and len(names) == out.dim():
            found, pick = slice_names(tuple(x.shape), src.names, args[1], tuple(out.shape), self.size_of)
            names = [found.get(j, n) for j, n in enumerate(names)]
        if base in _JOINS and names is not None and len(names) == out.dim():
            names = self._counted(base, args, kwargs, names)
        kept = src is not None and bool(src.what) and base in _KEEPS_FACTS and out.shape == x.shape and \
            not (base == "index_select" and _arg_dim(args, kwargs) % x.dim() == src.t_axis)
        if kept and (names is None or len(names) != out.dim()):
            names = [None] * out.dim()
        facts = None
        if names is not None and len(names) == out.dim() and (any(names) or kept):
            facts = self.put(out, names, src.what if kept else "", src.t_axis if kept else -1)  # type: ignore[union-attr]
            facts.pick = pick
            facts.step = src is not None and (src.step or (base == "getitem" and src.t_axis < 0 and len(args) > 1
                                                          and _picks_time(src, x, args[1])))
            facts.looped = src is not None and src.looped
        if held or hold:
            (facts or self._facts_of(out)).held = hold or (held, src.what == "bi_dirs")  # type: ignore[union-attr]
        if src is not None and src.what and base in _MOVES:
            moved(src, base, args, kwargs, x, out, self._facts_of)
        if base == "unflatten" and src is not None:
            split_dirs(src, x, out, self._facts_of)

    def _facts_of(self, t: torch.Tensor) -> _Facts:
        return self.get(t) or self.put(t, [None] * t.dim())

    def _counted(self, base: str, args: tuple, kwargs: dict, names: Names) -> Names:
        """A cat/stack whose joined dim no name fits: the number of pieces names it (``"7*bs"``: 7
        tensors of bs rows, in list order), so a later view that cuts it is judged like any other."""
        pieces = args[0]
        if not isinstance(pieces, (list, tuple)) or len(pieces) < 2:
            return names
        d = _arg_dim(args, kwargs)
        facts = [self.get(p) for p in pieces]
        joined = joined_pick([f.pick if f is not None else None for f in facts], self.size_of)
        count = str(len(pieces))  # steps of the model input's T, as many as it has: T (where bs == T too)
        if len(pieces) == self.size_of("T") and all(f is not None and (f.step or f.looped) for f in facts):
            count = "T"
        if base == "stack":
            d %= len(names)
            names = [*names[:d], joined or names[d] or count, *names[d + 1:]]
            return names
        d %= len(names)
        first = facts[0]
        if joined and first is not None and d < len(first.names) and first.names[d]:  # x[0::r], x[1::r], … side by side
            return [*names[:d], f"{joined}*{first.names[d]}", *names[d + 1:]]
        if names[d] is not None:
            return names
        inner = first.names[d] if first is not None and d < len(first.names) else None
        if not inner or any(not isinstance(p, torch.Tensor) or p.dim() != len(names) or p.shape[d] != pieces[0].shape[d]
                            or (self.get(p) or first).names[d] != inner for p in pieces):
            return names
        return [*names[:d], f"{count}*{inner}", *names[d + 1:]]


for _method in (FlowMode.__torch_function__, FlowMode.pre, FlowMode.post):  # run between a compiled model's ops
    dynamo_skip(_method.__code__)


def _hooks_of_its_own(module: nn.Module) -> bool:
    """Has the layer forward pre-hooks of its own (not shapeviz's)? They run after this global one and may change
    what the layer gets (a transpose, say): what this one sees is then no evidence of what the layer reads."""
    hooks = module.__dict__.get("_forward_pre_hooks")
    return bool(hooks) and any(not isinstance(h, ShapevizHook) for h in hooks.values())


def _arg_dim(args: tuple, kwargs: dict) -> int:
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    return int(dim) if isinstance(dim, int) else 0


def _picks_time(src: _Facts, x: torch.Tensor, index: Any) -> bool:
    plan = index_plan(x.dim(), index)
    return plan is not None and any(src.names[d] == "T" for d, _ in plan[1])


def _facts_of(t: Any) -> _Facts | None:
    """What the flow active in this thread knows of ``t`` (None at once when no flow is on)."""
    modes = getattr(_LOCAL, "modes", None) if _ACTIVE[0] else None
    if not modes:
        return None
    with torch._C.DisableTorchFunction():
        return modes[-1].get(t)


def one_step(t: Any) -> bool:
    """Is ``t`` made from one step of the model input's T (``emb(src[:, 0])``) in the flow of this thread?"""
    f = _facts_of(t)
    return f is not None and f.step


def known_names(t: Any) -> tuple[str | None, ...] | None:
    """The names with evidence that the ``ops=True`` flow active in this thread knows for tensor ``t``
    (None for a dim it cannot name), or None when no flow is on or it does not know ``t``.

    >>> import torch
    >>> from shapeviz.tracing.naming import name
    >>> x = name(torch.zeros(4, 6, 8), "bs T emb")
    >>> known_names(x) is None  # no flow on: None at once, nothing allocated
    True
    >>> with flow():
    ...     y = torch.nn.GRU(8, 16)(x.transpose(0, 1))[0]
    ...     known_names(y), known_names(x.view(2, 12, 8)), known_names(torch.ones(3))
    (('T', 'bs', 'D*h'), ('bs[2:4]', 'bs[1:2]*T', 'emb'), None)

    A name is a plain name (``"bs"``), a product in memory order (``"bs*skip"``, ``"T*bs"``), a count
    (``"3"``: copies made by expand/repeat, or tensors a cat/stack joined: ``"7*bs"``) or a part of a
    dim, ``"bs[2:4]"`` (its strides 2..4: the outer half of bs). With ``ops=True`` a dim's
    provenance, not its size, says what it is: a dim is ``bs`` only where this returns ``"bs"``.
    """
    f = _facts_of(t)
    if f is None or not any(f.names):
        return None
    return tuple(n or None for n in f.names)


@contextlib.contextmanager
def _hooks(mode: FlowMode) -> Iterator[FlowMode]:
    """The module hooks that tell ``mode`` where a model's forward starts and ends; removed on every path."""
    modes = getattr(_LOCAL, "modes", None)
    if modes is None:
        modes = _LOCAL.modes = []
    modes.append(mode)
    with _ACTIVE_LOCK:
        _ACTIVE[0] += 1
    try:
        with _registered_hooks(mode):
            yield mode
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE[0] -= 1
        with contextlib.suppress(ValueError):
            modes.remove(mode)


@contextlib.contextmanager
def _registered_hooks(mode: FlowMode) -> Iterator[FlowMode]:
    pre = module_hooks.register_module_forward_pre_hook(lambda m, a: mode.pre(m, a))
    try:
        post = module_hooks.register_module_forward_hook(lambda m, a, o: mode.post(m, a, o), always_call=True)
        try:
            yield mode
        finally:
            post.remove()
    finally:
        pre.remove()
        mode.facts.clear()


@contextlib.contextmanager
def flow(inputs: str | tuple[str, ...] | None = None, layer_check: LayerCheck | None = None) -> Iterator[FlowMode]:
    """Track named dims live over the ops in the block (see the module docs); removed on every path.
    ``layer_check(module, conventions, args, names, path_of)`` is called before each recurrent call whose input
    the flow names (``path_of(module)``: its path in the module called first)."""
    names = parse_names(inputs, "inputs") if isinstance(inputs, str) else inputs
    mode = FlowMode(names, layer_check)
    with _hooks(mode):
        push_under(mode)  # not `with mode`: its exit pops whatever mode is on top, not this one
        try:
            yield mode
        finally:
            take_out(mode)
            mode.flush()


def flow_block(inputs: str | None, ops: bool, layer_check: LayerCheck | None = None
               ) -> contextlib.AbstractContextManager[Any]:
    """``checking(ops=True)``'s block: :func:`flow`, or nothing at all when ``ops`` is False."""
    return flow(inputs, layer_check) if ops else contextlib.nullcontext()


def start(inputs: str | None, layer_check: LayerCheck | None = None, named: nn.Module | None = None) -> Any:
    """``watch(ops=True)``: start tracking now, in this thread; returns the function that stops it. ``inputs``
    names the first input of each call of ``named`` (the watched model).

    The mode goes on this thread's torch-function mode stack (torch keeps one per thread), so it is
    stopped from this thread. It goes in at the bottom (a device context entered before it pops its own
    mode on exit) and is taken out wherever it sits, so handles can be removed in any order and a mode or
    device context entered after it stays in place.
    """
    names = parse_names(inputs, "inputs") if isinstance(inputs, str) else None
    mode = FlowMode(names, layer_check, named)
    owner = threading.get_ident()
    hooks = _hooks(mode)
    hooks.__enter__()
    push_under(mode)

    def stop() -> None:
        if threading.get_ident() != owner:
            raise SpecError("watch(ops=True): remove() the handle in the thread that created it: torch keeps "
                            "its mode stack per thread, so another thread cannot take the op tracking out")
        try:
            take_out(mode)
            mode.flush()
        finally:
            hooks.__exit__(None, None, None)

    return stop
