"""Dry runs: a model's forward on the ``meta`` device, checked and traced, with no computation.

>>> import torch.nn as nn
>>> model = nn.Sequential(nn.Embedding(28, 16), nn.GRU(16, 32, batch_first=True))
>>> run = dry_run(model, "bs=2,T=5", vocab=28)
>>> run.ok, [(i.role, i.format()) for i in run.trace.find(path="1")[0].outputs]
(True, [('output', '(bs=2, T=5, D*h=32)'), ('h_n', '(layers*D=1, bs=2, h=32)')])

The inputs are built on ``meta`` from declared sizes (names in the order given: ``"bs=2,T=5"``
with a vocabulary makes a ``(bs, T)`` LongTensor of token ids; ``"T=5,bs=2,emb=10"`` a float
``(T, bs, emb)`` tensor). A model built under ``with torch.device("meta"):`` runs as it is; a model
with real weights runs with ``meta`` stand-ins for its parameters and buffers, swapped in for the
call only (as ``torch.func.functional_call`` does), so it is neither copied nor changed. Tensors
the forward creates itself (``torch.zeros(layers, bs, h)``) are made on ``meta`` too.

Checking (:func:`shapeviz.checking` with the input's dim names) and tracing
(:func:`shapeviz.tracing.session.trace`) are on for the call; the first :class:`~shapeviz.ShapeError` is kept
in ``.error``, not raised. Other exceptions (an operation ``meta`` cannot run, a bug in the model)
propagate, with the partial trace in their notes.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from shapeviz._errors import ShapeError, SpecError
from shapeviz.core.dimensions import dims, parse_sizes
from shapeviz.core.model import conventions, is_recurrent
from shapeviz.runtime.watching import checking
from shapeviz.tracing.records import Trace
from shapeviz.tracing.session import trace

__all__ = ["DryRun", "dry_run", "meta_inputs"]

_META = torch.device("meta")
_TOKEN_MODULES = (nn.Embedding, nn.EmbeddingBag)


@dataclass
class DryRun:
    """The outcome of :func:`dry_run`: the trace, and the first ShapeError (None when the shapes fit).

    >>> import torch.nn as nn
    >>> run = dry_run(nn.LSTM(10, 20), "T=5,bs=2,emb=10")
    >>> run
    DryRun(LSTM, input (T=5, bs=2, emb=10) float32 on meta: ok, 1 module call)
    >>> run.trace.calls[0].outputs[0].format()
    '(T=5, bs=2, D*h=20)'
    """

    model: str
    input_shape: tuple[int, ...]
    input_names: tuple[str, ...]
    dtype: torch.dtype
    trace: Trace | None
    error: ShapeError | None = None
    sizes: dict[str, int] = field(default_factory=dict)  # every size declared for the run (vocab too)
    stand_ins: int = 0  # parameters and buffers that ran as meta stand-ins (0: a meta-built model)

    @property
    def ok(self) -> bool:
        """True when every checked call fitted its module's conventions."""
        return self.error is None

    @property
    def input_text(self) -> str:
        """``"(bs=2, T=5) int64"``: the input the run built."""
        dims_ = ", ".join(f"{n}={s}" for n, s in zip(self.input_names, self.input_shape))
        return f"({dims_}) {str(self.dtype).removeprefix('torch.')}"

    def _calls(self) -> str:
        if self.trace is None:
            return "no trace"
        n = len(self.trace.modules())
        return f"{n} module call{'s' if n != 1 else ''}"

    def __repr__(self) -> str:
        status = "ok" if self.error is None else f"ShapeError [{self.error.code}] at {self.error.module}, " \
            f"argument `{self.error.argument}`"
        if self.error is not None:
            status += f" after {self._calls()}"
            return f"DryRun({self.model}, input {self.input_text} on meta: {status})"
        return f"DryRun({self.model}, input {self.input_text} on meta: {status}, {self._calls()})"

    def __str__(self) -> str:
        parts = [repr(self)]
        if self.trace is not None:
            parts.append(self.trace.table())
        if self.error is not None:
            parts.append(str(self.error))
        return "\n".join(parts)

    def raise_error(self) -> None:
        """Raise the recorded :class:`~shapeviz.ShapeError`, if there is one (for scripts and CI)."""
        if self.error is not None:
            raise self.error

    def _repr_html_(self) -> str:
        from shapeviz.render.html import shape_error_html

        head = f"<p><b>dry run</b> <code>{html.escape(repr(self))}</code></p>"
        table = "" if self.trace is None else f"<pre>{html.escape(self.trace.table())}</pre>"
        err = "" if self.error is None else shape_error_html(self.error)
        return head + err + table


def _sizes(inputs: str | Mapping[str, int]) -> dict[str, int]:
    if isinstance(inputs, str):
        return parse_sizes(inputs, "dry_run(inputs=...)")
    if isinstance(inputs, Mapping):
        return parse_sizes(",".join(f"{k}={v}" for k, v in inputs.items()), "dry_run(inputs=...)")
    raise SpecError(f"dry_run(inputs=...): expected sizes such as 'bs=2,T=5', got {inputs!r}")


def _first_leaf(model: nn.Module) -> nn.Module | None:
    for m in model.modules():
        if next(m.children(), None) is None and (is_recurrent(m) or any(True for _ in m.parameters())):
            return m
    return None


def _float_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def meta_inputs(model: nn.Module, inputs: str | Mapping[str, int] = "bs=2,T=5", vocab: int | None = None,
                dtype: torch.dtype | None = None) -> tuple[torch.Tensor, tuple[str, ...], dict[str, int]]:
    """The meta input a dry run feeds ``model``, its dim names, and every declared size.

    >>> import torch.nn as nn
    >>> x, names, sizes = meta_inputs(nn.GRU(10, 20, batch_first=True), "bs=2,T=5")
    >>> tuple(x.shape), names, x.device.type
    ((2, 5, 10), ('bs', 'T', 'emb'), 'meta')

    Token ids when a vocabulary is given (``vocab=28`` or ``"bs=2,T=5,vocab=28"``) or the model's
    first layer is an ``Embedding`` (its ``num_embeddings``); else floats of the model's dtype. When
    the first layer is recurrent and no ``emb`` is given, its ``input_size`` is appended as ``emb``
    (the names keep the order given: ``"bs=2,T=5"`` is a batch-first input).
    """
    sizes = _sizes(inputs)
    if "vocab" in sizes:
        if vocab is not None and vocab != sizes["vocab"]:
            raise SpecError(f"dry_run: vocab={vocab} and inputs {inputs!r} disagree")
        vocab = sizes.pop("vocab")
    first = _first_leaf(model)
    if vocab is None and isinstance(first, _TOKEN_MODULES) and len(sizes) <= 2:
        vocab = first.num_embeddings
    names = tuple(sizes)
    if vocab is not None:
        if dtype is not None and (dtype.is_floating_point or dtype.is_complex):
            raise SpecError(f"dry_run: token ids (vocab={vocab}) need an integer dtype, got {dtype}")
        x = torch.empty(tuple(sizes.values()), dtype=dtype or torch.long, device=_META)
        return x, names, {**sizes, "vocab": vocab}
    if is_recurrent(first) and "emb" not in sizes:
        sizes["emb"] = conventions(first).input_size  # type: ignore[arg-type]
        names = tuple(sizes)
    x = torch.empty(tuple(sizes.values()), dtype=dtype or _float_dtype(model), device=_META)
    return x, names, dict(sizes)


def _stand_ins(model: nn.Module) -> dict[str, torch.Tensor]:
    """Meta tensors for every parameter and buffer not on meta already (shared ones once)."""
    out: dict[str, torch.Tensor] = {}
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.device.type != "meta":
            out[name] = torch.empty_like(t, device=_META, requires_grad=False)
    return out


@contextmanager
def _swapped(model: nn.Module, tensors: dict[str, torch.Tensor]) -> Iterator[None]:
    """The parameters and buffers of ``model`` replaced by ``tensors`` inside, restored on exit.

    This is the reparametrization ``torch.func.functional_call`` runs the module under; entering it
    here lets :func:`shapeviz.tracing.session.trace` call (and hook) the model itself."""
    if not tensors:
        yield
        return
    from torch.nn.utils.stateless import _reparametrize_module

    # an RNN's forward refreshes its cached `_flat_weights` list from the (swapped) parameters;
    # put the list it had back, so no reference to a stand-in outlives the run
    flat = [(m, m._flat_weights) for m in model.modules() if isinstance(m, nn.RNNBase)]
    try:
        with _reparametrize_module(model, tensors, tie_weights=True, strict=False):
            yield
    finally:
        for m, weights in flat:
            m._flat_weights = weights


def dry_run(model: nn.Module, inputs: str | Mapping[str, int] = "bs=2,T=5", vocab: int | None = None,
            dtype: torch.dtype | None = None) -> DryRun:
    """Run ``model``'s forward on ``meta`` inputs built from declared sizes, checked and traced.

    >>> import torch, torch.nn as nn
    >>> with torch.device("meta"):
    ...     lm = nn.Sequential(nn.Embedding(50000, 2048), nn.LSTM(2048, 4096, batch_first=True))
    >>> run = dry_run(lm, "bs=2,T=5")  # (bs=2, T=5) tokens -> (bs=2, T=5, emb=2048) -> (bs=2, T=5, D*h=4096)
    >>> run.ok, run.trace.find(path="1")[0].outputs[0].format()
    (True, '(bs=2, T=5, D*h=4096)')

    A layout mistake comes back in ``.error`` (not raised), with the trace up to it:

    >>> seq_first = nn.Sequential(nn.Embedding(28, 16), nn.RNN(16, 32))  # forgot tokens.T
    >>> run = dry_run(seq_first, "bs=2,T=5")
    >>> run.error.code, run.error.hints[0]
    ('batch_first_swap', 'x = x.transpose(0, 1)  # (bs, T, emb) -> (T, bs, emb)')

    ``inputs``: sizes in the order of the input's dims (``"bs=2,T=5"``, ``"T=5,bs=2,emb=10"``, or
    a dict). ``vocab``: make token ids (also inferred from a first ``Embedding``). ``dtype``: the
    input's dtype (default: ``long`` for tokens, else the model's). Costs no computation and no
    activation memory: every tensor is ``meta``, recurrent layers are shaped by their conventions.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"dry_run() takes an nn.Module, got {type(model).__name__}")
    x, names, sizes = meta_inputs(model, inputs, vocab, dtype)
    spec = " ".join(names)
    extra = {k: v for k, v in sizes.items() if k not in names}
    stand_ins = _stand_ins(model)
    run = DryRun(model=type(model).__name__, input_shape=tuple(int(s) for s in x.shape), input_names=names,
                 dtype=x.dtype, trace=None, sizes=sizes, stand_ins=len(stand_ins))
    with ExitStack() as stack:
        stack.enter_context(_swapped(model, stand_ins))
        stack.enter_context(_META)  # tensors the forward makes itself: meta too
        stack.enter_context(checking(inputs=spec))
        if extra:
            stack.enter_context(dims(**extra))
        try:
            run.trace = trace(model, x, inputs_dims=spec)
        except ShapeError as err:
            run.error = err
            run.trace = getattr(err, "shapeviz_trace", None)
    return run

