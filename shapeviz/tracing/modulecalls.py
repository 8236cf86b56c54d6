"""Module calls during a trace: the stack of open calls, their records, and a recurrent call's arguments
and results named from its :class:`~shapeviz.core.model.Conventions`.

>>> import torch, torch.nn as nn
>>> from shapeviz.tracing.provenance import Provenance
>>> flow = Provenance()
>>> calls = ModuleCalls([], TensorBook(flow), flow)
>>> rnn = nn.GRU(4, 8)
>>> calls.enter("rnn", rnn, (torch.zeros(5, 2, 4),), {}, user=False)
>>> calls.exit(rnn, rnn(torch.zeros(5, 2, 4)), always=False)
>>> [(i.role, i.names) for i in calls.calls[0].outputs]
[('output', ('T', 'bs', 'D*h')), ('h_n', ('layers*D', 'bs', 'h'))]

:class:`~shapeviz.tracing.recorder.Tracer` calls :meth:`ModuleCalls.enter` and :meth:`ModuleCalls.exit` from
the module hooks (and :mod:`shapeviz.tracing.direct`); a call that raises is closed as a failed one.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch.nn.utils.rnn import PackedSequence

from shapeviz.core.model import Conventions, conventions, is_recurrent
from shapeviz.tracing.learning import learned_sizes
from shapeviz.tracing.modulerules import module_how
from shapeviz.tracing.naming import READINGS, How, Names, OpView
from shapeviz.tracing.oprules import flatten
from shapeviz.tracing.provenance import Provenance
from shapeviz.tracing.records import Call, CallKind, TensorInfo
from shapeviz.tracing.sites import as_torch_call, forward_params, site_of, type_name, user_frame
from shapeviz.tracing.tensorbook import TensorBook

__all__ = ["ModuleCalls", "Open"]

Open = tuple[Call, int, bool, "BaseException | None"]
"""An open module call: (its record, id(module), whether it is your code, the exception being handled when it
started)."""


class ModuleCalls:
    """The module calls of one forward: records them as they start and end, in the trace's list of calls."""

    __slots__ = ("book", "calls", "carry_cache", "dims_cache", "flow", "open", "to_learn")

    def __init__(self, calls: list[Call], book: TensorBook, flow: Provenance) -> None:
        self.calls = calls  # every call of the trace, ops included, in the order they started
        self.book = book
        self.flow = flow
        self.open: list[Open] = []
        # what the recurrent calls named, learned when the forward is done: (names, shape, id(conv)) or
        # ("sizes", id(conv)) -> the Conventions
        self.to_learn: dict[tuple, Conventions] = {}
        # (id(conventions), batched, packed) -> its dims; the Conventions live in the calls meanwhile
        self.dims_cache: dict[tuple[int, bool, bool], dict[str, tuple[str, ...]]] = {}
        self.carry_cache: dict[tuple[int, bool, tuple[str, ...]], Carry] = {}

    def user_code(self) -> bool:
        """Whether the code running now is yours: outside every module call, or in one of your modules."""
        return not self.open or self.open[-1][2]

    def top(self) -> Call | None:
        return self.open[-1][0] if self.open else None

    # ------------------------------------------------------------ start and end
    def enter(self, path: str, module: Any, args: tuple, kwargs: dict[str, Any], user: bool) -> None:
        parent = self.open[-1][0] if self.open else None
        conv = conventions(module) if is_recurrent(module) else None
        call = Call(index=len(self.calls), path=path, type=type_name(module), kind=CallKind.MODULE,
                    conventions=conv, depth=len(self.open), parent=parent.index if parent is not None else None)
        self.calls.append(call)
        self.open.append((call, id(module), user, sys.exc_info()[1]))
        site = user_frame()
        if site is not None:
            call.site, call.code = site_of(site)
        if conv is not None:
            args, kwargs, others = as_torch_call(module, args, kwargs)
            call.inputs = self._recurrent(conv, args, kwargs, inputs=True, origin=f"conventions of {call.name}")
            if others:  # a subclass's own arguments (lengths=...): listed by name, unnamed
                call.inputs += self.book.infos(others, "", arg_names=("*",))
        else:
            book = self.book
            call.inputs = book.infos(args, "", arg_names=forward_params(module))
            if kwargs:
                call.inputs += book.infos(kwargs, "", arg_names=("*",))
            if self.flow.origins:
                self.flow.open_call(call.index, call.inputs)

    def exit(self, module: Any, output: Any, always: bool) -> None:
        """A module call ends. ``always``: the hook is called on every path (``always_call``); it is
        called while handling an exception that was not being handled when the call started when the
        call raised: the call is closed as a failed one."""
        open_ = self.open
        exc = sys.exc_info()[1] if always and output is None and open_ else None
        if exc is not None:
            top = open_[-1]
            if top[1] == id(module):
                if exc is not top[3]:  # it raised: closed as a failed call
                    top[0].error = top[0].error or type(exc).__name__
                    open_.pop()
                    return
            elif all(entry[1] != id(module) for entry in open_):
                return  # its pre hook never ran (one before it raised): nothing of it is open
        with torch._C.DisableTorchFunction():  # no torch-function handling while shapes are read
            self._close(module, output)

    def _close(self, module: Any, output: Any) -> None:
        open_ = self.open
        while open_ and open_[-1][1] != id(module):
            open_.pop()  # a call that raised inside a try/except of the user's
        if not open_:
            return
        call = open_.pop()[0]
        if call.conventions is not None:
            tensors: list[Any] = []
            source = call.inputs[0] if call.inputs and call.inputs[0].role == "input" else None
            call.outputs = self._recurrent(call.conventions, output, {}, inputs=False, tensors=tensors,
                                           origin=f"conventions of {call.name}", source=source)
            for pos, t in enumerate(tensors):  # a recurrent call's results start a new flow
                self.flow.mark(t, ((call.index, pos),), keep=False)
        else:
            how = module_how(call.type, list(call.inputs), f"module {call.name}")
            if call.type == "MultiheadAttention" and isinstance(output, tuple) and len(output) == 2:
                call.outputs = [*self.book.infos(output[0], "0", how, keep_known=True),  # the weights by size alone
                                *self.book.infos(output[1], "1", None, keep_known=True)]
            else:
                call.outputs = self.book.infos(output, "", how, keep_known=True)
            if self.flow.in_flow:
                self.flow.close_call(call.index, output)
        self.book.produced(call.outputs, call.index)

    # ------------------------------------------------------------ recurrent calls
    def _recurrent(self, conv: Conventions, obj: Any, kwargs: dict[str, Any], inputs: bool,
                   tensors: list[Any] | None = None, origin: str = "conventions",
                   source: TensorInfo | None = None) -> list[TensorInfo]:
        """Records of a recurrent module's arguments or results, named from its Conventions; a result's time and
        batch dims are named as the ``source`` (the call's input) names its own, where it has evidence for them
        (a batch of ``bs*U`` sentences stays ``bs*U``; a time the user named ``S`` stays ``S``)."""
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
        layout = conv.layout
        packed = isinstance(first, PackedSequence)
        batched: bool | None = None  # a cell's results: decided from each state's ndim below
        if inputs or not conv.cell:
            batched = packed or (isinstance(first, torch.Tensor) and layout.is_batched(first.dim()) is True)
        infos: list[TensorInfo] = []
        for key, value, roles in top:
            if value is None:
                continue
            # a list state ([h, c] from a detach in a training loop) is listed tensor by tensor, as a tuple is
            items = [(key, value, "")] if type(value) is torch.Tensor else list(flatten(_no_lists(value), key))
            for n, (k, t, part) in enumerate(items):
                if isinstance(t, tuple):
                    t = t[0]
                role = roles[min(n, len(roles) - 1)] if part == "" else roles[0]
                b = batched if batched is not None else t.dim() == layout.state_batched_ndim
                dims = self.dims_cache.get((id(conv), b, packed))
                if dims is None:
                    dims = self.dims_cache[(id(conv), b, packed)] = conv.dim_exprs(batched=b, packed=packed)
                names: tuple[str, ...] | None
                if part == "batch_sizes":
                    names = ("T",)
                else:
                    names = dims.get(role)
                    if names is not None and len(names) != t.dim():
                        names = None
                how = How.exact(names, origin) if names else None
                if names and source is not None and source.names is None and not packed:  # its names come later
                    carry = self.carry_cache.get((id(conv), b, names))
                    if carry is None:
                        carry = self.carry_cache[(id(conv), b, names)] = Carry(dims["input"], names)
                    how = How.filled(How.by_rule(carry, (source,), origin), names, origin)
                info = self.book.info(t, how, key=k, role=role, packed=part)
                infos.append(info)
                if tensors is not None:
                    tensors.append(t)
                if names:  # learned when the forward is done, in this order (a repeat adds nothing)
                    self.to_learn.setdefault((names, info.shape, id(conv)), conv)
        self.to_learn.setdefault(("sizes", id(conv)), conv)
        return infos

    def learn(self, declared: dict[str, int], learned: dict[str, set[int]]) -> None:
        """Add to ``learned`` the sizes the recurrent calls named (not ``declared`` ones), in the order they were
        recorded."""
        for key, conv in self.to_learn.items():
            for name, size in learned_sizes(key, conv):
                if name not in declared:
                    sizes = learned.get(name)
                    if sizes is None:
                        learned[name] = {size}
                    else:
                        sizes.add(size)
        self.to_learn.clear()


class Carry:
    """The rule naming a recurrent call's result by its input: each of the result's dims the conventions call
    ``T`` or ``bs`` takes the name the input's dim of that name has with evidence (None: the conventions' name).
    A callable object, not a closure: the resolver caches what it gives per shape and names.

    >>> from shapeviz.tracing.naming import OpView
    >>> x = TensorInfo((12, 6, 8), ("bs*U", "W", "emb"))
    >>> Carry(("bs", "T", "emb"), ("layers*D", "bs", "h"))(OpView([x], (1, 12, 5), None))
    [None, 'bs*U', None]
    """

    __slots__ = ("at",)

    def __init__(self, input_dims: tuple[str, ...], result_dims: tuple[str, ...]) -> None:
        self.at = [input_dims.index(d) if d in READINGS and d in input_dims else None for d in result_dims]

    def __call__(self, op: OpView) -> Names:
        src = op.names(0)
        return [None if i is None or i >= len(src) else src[i] for i in self.at]


def _no_lists(obj: Any) -> Any:
    """Lists as tuples (nested too), so :func:`flatten` lists every tensor of a state one by one.

    >>> _no_lists([1, [2, 3]])
    (1, (2, 3))
    """
    return tuple(_no_lists(o) for o in obj) if type(obj) in (list, tuple) else obj  # a PackedSequence stays
