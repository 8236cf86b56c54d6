"""The recorder of one forward pass: module calls, ops, data flow and names, each kept by its own part.

>>> import torch, torch.nn as nn
>>> tracer = Tracer(ops=False, declared_sizes={})
>>> rnn = nn.GRU(4, 8)
>>> tracer.enter("", rnn, (torch.zeros(5, 2, 4),), {}, user=False)
>>> tracer.exit(rnn, rnn(torch.zeros(5, 2, 4)))
>>> sizes = tracer.resolve()
>>> [(i.role, i.names) for i in tracer.calls[0].outputs]
[('output', ('T', 'bs', 'D*h')), ('h_n', ('layers*D', 'bs', 'h'))]

A :class:`Tracer` is made of

* a :class:`~shapeviz.tracing.tensorbook.TensorBook`: the records of the tensors (weak references only);
* :class:`~shapeviz.tracing.modulecalls.ModuleCalls`: the stack of open module calls and their records;
* an :class:`~shapeviz.tracing.oprecorder.OpRecorder` and its :class:`~shapeviz.tracing.oprecorder.OpMode`:
  the ops of your code (and the op that raised);
* a :class:`~shapeviz.tracing.provenance.Provenance`: the data flow from recurrent calls;
* a :class:`~shapeviz.tracing.modestack.Quiet`: the op mode stepping aside in torch modules without children.

:func:`shapeviz.tracing.session.trace` installs the hooks and the :class:`OpMode` around a call and removes
them on every path; :meth:`Tracer.resolve` names every record when the forward is done.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.utils.rnn import PackedSequence

from shapeviz.core.model import is_recurrent
from shapeviz.tracing.modestack import Quiet, quiet_hooks_supported
from shapeviz.tracing.modulecalls import ModuleCalls, Open
from shapeviz.tracing.naming import Namer, flag_scramble, unname_contradicted
from shapeviz.tracing.oprecorder import OpMode, OpRecorder
from shapeviz.tracing.oprules import RESHAPES
from shapeviz.tracing.provenance import Provenance
from shapeviz.tracing.records import Call, CallKind
from shapeviz.tracing.tensorbook import TensorBook

__all__ = ["OpMode", "Tracer", "quiet_hooks_supported"]


class Tracer:
    """Collects the Calls of one forward; holds tensors only through weak references."""

    def __init__(self, ops: bool, declared_sizes: dict[str, int], by_dims: dict[str, int] | None = None) -> None:
        self.ops = ops
        self.calls: list[Call] = []
        self.declared = dict(declared_sizes)
        self.by_dims = dict(by_dims or {})  # the sizes sv.dims declared: a unique one names dims by size
        self.learned: dict[str, set[int]] = {}
        self.flow = Provenance()
        self.book = TensorBook(self.flow)
        self.modules = ModuleCalls(self.calls, self.book, self.flow)
        self.op_recorder = OpRecorder(self.calls, self.book, self.modules)
        self.quiet = Quiet()
        self.mode: OpMode | None = None  # the op mode recording this forward (set by OpMode)
        self.finished = False  # set by close(): enter/exit do nothing after it

    @property
    def stack(self) -> list[Open]:
        """The open module calls, innermost last."""
        return self.modules.open

    @property
    def failed(self) -> Call | None:
        """The latest op that raised."""
        return self.op_recorder.failed

    # ------------------------------------------------------------ module calls
    def enter(self, path: str, module: Any, args: tuple, kwargs: dict[str, Any], user: bool,
              quiet: bool = False) -> None:
        """A module call starts. ``quiet``: a torch module without children (none of your code runs in
        it) whose forward hook is called on every path: the op mode steps aside until it ends. A finished
        trace records nothing (a hook that outlived it, on a copy of a module say, is inert)."""
        if self.finished:
            return
        with torch._C.DisableTorchFunction():  # no torch-function handling (our mode included) while shapes are read
            self.modules.enter(path, module, args, kwargs, user)
        if quiet and self.mode is not None and self.quiet.depth is None and not self.ops_needed(module, args, kwargs):
            self.quiet.step_aside(self.mode, len(self.modules.open), module)

    def exit(self, module: Any, output: Any, always: bool = False) -> None:
        """A module call ends (see :meth:`~shapeviz.tracing.modulecalls.ModuleCalls.exit`)."""
        if self.finished:
            return
        if self.quiet.ends(module, len(self.modules.open)):
            self.quiet.back(self.mode)  # the quiet call (or one around it) ends
        self.modules.exit(module, output, always)

    def unquiet(self) -> None:
        """Put the op mode back if a quiet module call took it off (every path of the forward ends here)."""
        self.quiet.back(self.mode)

    def ops_needed(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> bool:
        """Whether the op mode must see the ops inside this library module: a recurrent kernel on ``meta``."""
        if not is_recurrent(module):
            return False
        first = args[0] if args else kwargs.get("input")
        if isinstance(first, PackedSequence):
            first = first.data
        return not isinstance(first, torch.Tensor) or first.device.type == "meta"

    # ------------------------------------------------------------ the end
    def resolve(self) -> dict[str, list[int]]:
        """Name every record (the forward is done); the sizes the trace knows by name."""
        self.modules.learn(self.declared, self.learned)
        namer = Namer(self.declared, self.learned, self.by_dims)
        self.book.name_all(namer)
        for call in self.calls:  # a view/reshape that cut across named dims: the event is kept
            unname_contradicted(call, namer)
            if call.kind is CallKind.OP and call.type.strip("_") in RESHAPES:
                flag_scramble(call, namer)
        sizes = {n: [s] for n, s in self.declared.items()}
        for n, ss in self.learned.items():
            sizes.setdefault(n, sorted(ss))
        return sizes

    def close(self) -> None:
        """The forward is over: what it held is let go, and nothing is recorded from now on. The op mode is let go
        too: it refers to this tracer, and a cycle would keep every record alive until a garbage collection."""
        self.finished = True
        self.mode = None
        self.book.clear()
        self.flow.clear_flows()
        self.modules.open.clear()
        self.op_recorder.owners.clear()
