"""Dry runs: a model's forward on the ``meta`` device, checked and traced, with no computation.

>>> import torch.nn as nn
>>> model = nn.Sequential(nn.Embedding(28, 16), nn.GRU(16, 32, batch_first=True))
>>> run = dry_run(model, "bs=2,T=5", vocab=28)
>>> run.ok, [(i.role, i.format()) for i in run.trace.find(path="1")[0].outputs]
(True, [('output', '(bs=2, T=5, D*h=32)'), ('h_n', '(layers*D=1, bs=2, h=32)')])

The inputs are what the model takes (positional, one tuple of them, or by keyword): example tensors
of any device and dtype, fed as ``meta`` tensors of the same shape and dtype, or size specs built on
``meta`` (``"bs=2,T=5"`` with a vocabulary makes a ``(bs, T)`` LongTensor of token ids;
``"T=5,bs=2,emb=10"`` a float ``(T, bs, emb)`` tensor; ``"bs=4,T=30 float"`` exactly ``(bs, T)``
floats). A model built under ``with torch.device("meta"):`` runs as it is; a model with real weights
runs with ``meta`` stand-ins for its parameters and buffers, swapped in for the call only (as
``torch.func.functional_call`` does), so it is neither copied nor changed. Tensors the forward creates
or moves itself (``torch.zeros(layers, bs, h).to(device)``) stay on ``meta``
(:class:`~shapeviz.tracing.meta.MetaMode`).

Checking (:func:`shapeviz.checking` with the first input's dim names) and tracing
(:func:`shapeviz.tracing.session.trace_named`, each spec naming its input) are on for the call; the first
:class:`~shapeviz.ShapeError` is kept in ``.error``, not raised. Code that needs a tensor's value (``.item()``,
``if t:``) raises :class:`~shapeviz.DryRunError` naming the line, with the trace up to it. Other exceptions (an
operation ``meta`` cannot run, a bug in the model) propagate, with the partial trace in their notes.
"""

from __future__ import annotations

import html
import inspect
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.nn.utils.parametrize import is_parametrized
from torch.nn.utils.rnn import PackedSequence

from shapeviz._errors import DryRunError, ShapeError, SpecError
from shapeviz._views import show
from shapeviz.core.dimensions import declared, dims, parse_sizes
from shapeviz.core.model import conventions, is_recurrent
from shapeviz.runtime.watching import checking
from shapeviz.tracing.meta import META, MetaMode
from shapeviz.tracing.naming import name as name_dims
from shapeviz.tracing.oprules import flatten
from shapeviz.tracing.records import Trace
from shapeviz.tracing.session import trace_named

__all__ = ["DryInput", "DryRun", "dry_run", "meta_inputs"]

_TOKEN_MODULES = (nn.Embedding, nn.EmbeddingBag)


@dataclass(frozen=True)
class DryInput:
    """One input of a dry run as the model got it: its keyword (``""`` if positional), shape, dim
    names (from its spec; ``""`` each for a tensor given as an example) and dtype.

    >>> DryInput("src", (2, 7), ("bs", "T"), torch.long).format()
    'src (bs=2, T=7) int64'
    """

    keyword: str
    shape: tuple[int, ...]
    names: tuple[str, ...]
    dtype: torch.dtype

    def format(self, keyword: bool = True) -> str:
        """``"src (bs=2, T=7) int64"``; a dim without a name shows its size alone."""
        dims_ = ", ".join(f"{n}={s}" if n else str(s) for n, s in zip(self.names, self.shape))
        text = f"({dims_}{',' if len(self.shape) == 1 and not self.names[0] else ''}) " \
               f"{str(self.dtype).removeprefix('torch.')}"
        return f"{self.keyword} {text}" if keyword and self.keyword else text


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
    inputs: tuple[DryInput, ...]  # the model's tensor inputs, in the order given (nested ones by their path)
    trace: Trace | None
    error: ShapeError | None = None
    sizes: dict[str, int] = field(default_factory=dict)  # every size declared for the run (vocab too)
    stand_ins: int = 0  # parameters and buffers that ran as meta stand-ins (0: a meta-built model)
    guessed: str = ""  # no input given: the first layer the input was built for (its error may be the guess's)

    @property
    def ok(self) -> bool:
        """True when every checked call fitted its module's conventions."""
        return self.error is None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The first input's shape."""
        return self.inputs[0].shape if self.inputs else ()

    @property
    def input_names(self) -> tuple[str, ...]:
        """The first input's dim names."""
        return self.inputs[0].names if self.inputs else ()

    @property
    def dtype(self) -> torch.dtype | None:
        """The first input's dtype."""
        return self.inputs[0].dtype if self.inputs else None

    @property
    def input_text(self) -> str:
        """``"(bs=2, T=5) int64"``: the input the run built; with several, all of them."""
        return ", ".join(i.format(keyword=len(self.inputs) > 1) for i in self.inputs)

    def _calls(self) -> str:
        if self.trace is None:
            return "no trace"
        n = len(self.trace.modules())
        return f"{n} module call{'s' if n != 1 else ''}"

    def __repr__(self) -> str:
        given = f"input{'s' if len(self.inputs) != 1 else ''} {self.input_text or '(none)'} on meta"
        if self.guessed:
            given += f" (guessed for {self.guessed})"
        if self.error is not None:
            return (f"DryRun({self.model}, {given}: ShapeError [{self.error.code}] at {self.error.module}, "
                    f"argument `{self.error.argument}` after {self._calls()})")
        return f"DryRun({self.model}, {given}: ok, {self._calls()})"

    def __str__(self) -> str:
        parts = [repr(self)]
        if self.trace is not None:
            parts.append(self.trace.table())
        if self.error is not None:
            parts.append(str(self.error))
            if self.guessed:
                parts.append(f"note: no input was given, and the one built for the first layer ({self.guessed}) may "
                             "not be what the model takes: give its sizes, e.g. sv.dry_run(model, 'bs=2,T=5 float')")
        return "\n".join(parts)

    def raise_error(self) -> None:
        """Raise the recorded :class:`~shapeviz.ShapeError`, if there is one (for scripts and CI)."""
        if self.error is not None:
            raise self.error

    def _repr_html_(self) -> str:
        head = f"<p><b>dry run</b> <code>{html.escape(repr(self))}</code></p>"
        table = "" if self.trace is None else f"<pre>{html.escape(self.trace.table())}</pre>"
        err = "" if self.error is None else show("ShapeError.html", self.error, ())
        return head + err + table


_KINDS: dict[str, torch.dtype | None] = {  # a spec's kind word -> dtype (None: the model's float dtype)
    "float": None, "float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
    "float32": torch.float32, "float64": torch.float64, "double": torch.float64, "long": torch.long,
    "int64": torch.long, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
    "bool": torch.bool,
}
_SPEC_FORMS = ("write sizes in the input's dim order, e.g. 'bs=2,T=5' (built like the model's first layer "
               "takes its input), 'bs=2,T=5,vocab=28' (token ids) or 'bs=4,T=30 float' (exactly these dims, "
               f"of that dtype; kinds: {', '.join(_KINDS)})")


def _spec(inputs: object, where: str) -> tuple[dict[str, int], str | None]:
    """``"bs=4,T=30 float"`` -> ``({"bs": 4, "T": 30}, "float")``; a dict of sizes has no kind."""
    if isinstance(inputs, Mapping):
        inputs = ",".join(f"{k}={v}" for k, v in inputs.items())
    if not isinstance(inputs, str) or not inputs.strip():
        raise SpecError(f"{where}: expected sizes such as 'bs=2,T=5', got {inputs!r}; {_SPEC_FORMS}")
    body, kind = inputs.strip(), None
    head, _, last = body.rpartition(" ")
    if head and "=" not in last:
        body, kind = head, last.strip()
        if kind not in _KINDS:
            raise SpecError(f"{where}: {kind!r} in {inputs!r} is not a kind; valid kinds: {', '.join(_KINDS)} "
                            "(e.g. 'bs=4,T=30 float' for a float series with no emb dim)")
    return parse_sizes(body, where), kind


def _first_layer(module: nn.Module) -> nn.Module | None:
    """The first module that holds weights: a leaf with parameters, or a recurrent or parametrized
    layer taken whole (its ``parametrizations`` container holds the weights, not the layer's input size)."""
    if is_recurrent(module) or is_parametrized(module):
        return module
    children = list(module.children())
    if not children:
        return module if any(True for _ in module.parameters()) else None
    for child in children:
        found = _first_layer(child)
        if found is not None:
            return found
    return None


def _float_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def _build(model: nn.Module, inputs: object, vocab: int | None, dtype: torch.dtype | None,
           follow: torch.dtype | None, where: str) -> tuple[torch.Tensor, tuple[str, ...], dict[str, int]]:
    """One meta input from a spec; ``follow``: the first spec's dtype, for a later spec with no kind."""
    sizes, kind = _spec(inputs, where)
    if "vocab" in sizes:
        if vocab is not None and vocab != sizes["vocab"]:
            raise SpecError(f"{where}: vocab={vocab} and inputs {inputs!r} disagree")
        vocab = sizes.pop("vocab")
    if kind is not None:
        dtype = _KINDS[kind] or _float_dtype(model)
    elif follow is not None:
        dtype = dtype or (torch.long if vocab is not None else follow)
    else:
        first = _first_layer(model)
        if vocab is None and isinstance(first, _TOKEN_MODULES):  # token ids of any rank: (bs, S, W) documents too
            vocab = first.num_embeddings
        if vocab is None and is_recurrent(first) and "emb" not in sizes:
            sizes["emb"] = conventions(first).input_size  # type: ignore[arg-type]
    if vocab is not None:
        if dtype is not None and (dtype.is_floating_point or dtype.is_complex):
            raise SpecError(f"{where}: token ids (vocab={vocab}) need an integer dtype, got {dtype}")
        dtype = dtype or torch.long
    x = torch.empty(tuple(sizes.values()), dtype=dtype or _float_dtype(model), device=META)
    return x, tuple(sizes), {**sizes, "vocab": vocab} if vocab is not None else dict(sizes)


def meta_inputs(model: nn.Module, inputs: str | Mapping[str, int] = "bs=2,T=5", vocab: int | None = None,
                dtype: torch.dtype | None = None) -> tuple[torch.Tensor, tuple[str, ...], dict[str, int]]:
    """The meta input a dry run builds from one spec, its dim names, and every declared size.

    >>> import torch.nn as nn
    >>> x, names, sizes = meta_inputs(nn.GRU(10, 20, batch_first=True), "bs=2,T=5")
    >>> tuple(x.shape), names, x.device.type
    ((2, 5, 10), ('bs', 'T', 'emb'), 'meta')
    >>> x, names, _ = meta_inputs(nn.LSTM(1, 32), "bs=4,T=30 float")  # a float series: exactly (bs, T)
    >>> tuple(x.shape), x.dtype
    ((4, 30), torch.float32)

    Token ids when a vocabulary is given (``vocab=28`` or ``"bs=2,T=5,vocab=28"``) or the model's
    first layer is an ``Embedding`` (its ``num_embeddings``); else floats of the model's dtype. When
    the first layer is recurrent and no ``emb`` is given, its ``input_size`` is appended as ``emb``
    (the names keep the order given: ``"bs=2,T=5"`` is a batch-first input). A kind word after the
    sizes (``"bs=4,T=30 float"``, ``"bs=2,T=5 long"``, any of :data:`_KINDS`) builds exactly the
    dims listed, of that dtype (``float``: the model's float dtype).
    """
    return _build(model, inputs, vocab, dtype, None, "dry_run(inputs=...)")


def _stand_ins(model: nn.Module) -> dict[str, torch.Tensor]:
    """Meta tensors for every parameter and buffer not on meta already (shared ones once); a parameter's is a
    Parameter too (with no grad), so code that assigns a weight to a parameter's name works as it does on
    the model (a weight drop's ``rnn.weight_hh_l0 = F.dropout(raw, p, False)``)."""
    out: dict[str, torch.Tensor] = {}
    for name, t in model.named_parameters():
        if t.device.type != "meta":
            out[name] = nn.Parameter(torch.empty_like(t, device=META), requires_grad=False)
    for name, t in model.named_buffers():
        if t.device.type != "meta":
            out[name] = torch.empty_like(t, device=META, requires_grad=False)
    return out


def _tensor_attrs(model: nn.Module) -> dict[tuple[int, str], tuple[nn.Module, Any]]:
    """Tensors (or tuples of them) kept as plain module attributes: the weight the old
    ``torch.nn.utils.weight_norm`` recomputes before each call, a state a forward saves in ``self``."""
    out: dict[tuple[int, str], tuple[nn.Module, Any]] = {}
    for m in model.modules():
        for k, v in vars(m).items():
            if isinstance(v, torch.Tensor) or (isinstance(v, (tuple, list)) and v
                                               and all(isinstance(t, torch.Tensor) for t in v)):
                out[id(m), k] = (m, v)
    return out


@contextmanager
def _left_as_it_was(model: nn.Module, tensors: dict[str, torch.Tensor]) -> Iterator[None]:
    """The parameters and buffers of ``model`` replaced by ``tensors`` inside; on exit (any exit) they,
    the RNNs' cached weight lists and the tensors kept as plain attributes are as they were.

    The swap is the reparametrization ``torch.func.functional_call`` runs the module under; entering it
    here lets :func:`shapeviz.tracing.session.trace` call (and hook) the model itself."""
    from torch.nn.utils.stateless import _reparametrize_module

    # an RNN's forward refreshes its cached `_flat_weights` list from the (swapped) parameters;
    # put the list it had back, so no reference to a stand-in outlives the run
    flat = [(m, list(m._flat_weights)) for m in model.modules() if isinstance(m, nn.RNNBase)]
    attrs = _tensor_attrs(model)
    registered = [(m, dict(m._parameters), dict(m._buffers)) for m in model.modules()
                  if not isinstance(m, torch.jit.ScriptModule)]  # (its weights: in TorchScript's own dicts)
    try:
        if tensors:
            with _reparametrize_module(model, tensors, tie_weights=True, strict=False):
                yield
        else:
            yield
    finally:
        for m, params, buffers in registered:  # one the forward registered (a plain attribute before) goes
            for now, was in ((m._parameters, params), (m._buffers, buffers)):
                if now.keys() != was.keys() or any(now[k] is not v for k, v in was.items()):
                    now.clear()
                    now.update(was)
        for key, (m, _) in _tensor_attrs(model).items():
            if key not in attrs:
                del m.__dict__[key[1]]  # a meta tensor the forward saved in `self`
        for (_, k), (m, v) in attrs.items():
            m.__dict__[k] = v  # not setattr: an RNN's __setattr__ would write into its weight list
        for m, weights in flat:  # (the list is updated in place when a weight is set: a copy was kept)
            m._flat_weights = weights


def _meta_value(value: Any, cpu_inputs: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> Any:
    """An example input as the dry run feeds it: tensors as meta tensors of the same shape and dtype.

    ``cpu_inputs`` collects (meta stand-in, original) for each integer CPU tensor of at most one dim (a
    packed batch's lengths, which torch needs on the CPU with their values).

    >>> pairs = []
    >>> _meta_value((torch.zeros(2, 5), torch.tensor([5, 3])), pairs)[1].device.type, len(pairs)
    ('meta', 1)
    """
    if isinstance(value, torch.Tensor):
        if value.device.type == "meta":
            return value
        out = torch.empty_like(value, device=META, requires_grad=False)
        if cpu_inputs is not None and value.device.type == "cpu" and value.dim() <= 1 \
                and not value.is_floating_point() and not value.is_complex():
            cpu_inputs.append((out, value))
        return out
    if isinstance(value, PackedSequence):  # batch_sizes stays on the CPU, as torch requires
        return value._replace(data=_meta_value(value.data))
    if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
        return type(value)(_meta_value(v, cpu_inputs) for v in value)
    if isinstance(value, dict):
        return {k: _meta_value(v, cpu_inputs) for k, v in value.items()}
    return value


def _is_spec(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, Mapping) and bool(value)
                                      and all(isinstance(v, int) for v in value.values()))


def _fits_forward(model: nn.Module, args: list[Any], kwargs: dict[str, Any]) -> None:
    """A SpecError, before anything runs, when the inputs cannot bind to ``model.forward``'s parameters."""
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):  # no signature to read: the forward will say
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        params = ", ".join(str(p.replace(annotation=p.empty)) for p in sig.parameters.values())
        given = ", ".join([*(["<positional>"] * len(args)), *(f"{k}=" for k in kwargs)]) or "nothing"
        raise SpecError(f"dry_run: {type(model).__name__}.forward({params}) cannot take the inputs given "
                        f"({given}): {exc}; give them as the forward takes them, positional or by its "
                        "parameter names (sizes for one input: dry_run(model, 'bs=2,T=5'))") from None


def dry_run(model: nn.Module, *inputs: Any, vocab: int | None = None, dtype: torch.dtype | None = None,
            **named_inputs: Any) -> DryRun:
    """Run ``model``'s forward on ``meta`` inputs, checked and traced, with no computation.

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

    The inputs are what the model takes, positional (or one tuple of them) and by keyword; each is
    a tensor of any device and dtype (fed as a ``meta`` tensor of the same shape and dtype; tensors in
    tuples, lists and dicts too) or a size spec:

    * ``"bs=2,T=5"``: sizes in the order of the input's dims. The first spec is built the way the
      model's first layer takes its input: token ids if that is an ``Embedding`` (or ``vocab=`` is
      given), else floats of the model's dtype with ``emb`` appended when the first layer is recurrent;
      a later spec gets exactly the dims listed, of the first spec's dtype (``src`` tokens, ``trg`` too).
    * ``"bs=4,T=30 float"``: a kind word after the sizes gives exactly these dims of that dtype (a float
      series with no emb dim); kinds: float (the model's float dtype), float16, bfloat16, float32,
      float64, long, int32, int16, int8, uint8, bool.

    With no input, ``"bs=2,T=5"``. ``vocab``: the token vocabulary (also inferred from a first
    ``Embedding``). ``dtype``: the dtype of the specs that name no kind. Each spec names its own input's
    dims; its sizes are declared (evidence for the checks) where no other spec gives the name another size
    (``"bs=6,T=4", "bs=4,T=6"``: ``bs`` and ``T`` are declared for neither). The vocabulary is a known size,
    never a name by size alone (``vocab?=36``).
    Factory calls and ``.to(device)``/``.cuda()``/``.cpu()`` inside the forward stay on ``meta``
    (:class:`~shapeviz.tracing.meta.MetaMode`); code that needs a value (``.item()``, ``if t:``) raises
    :class:`~shapeviz.DryRunError` naming its line, the trace up to it in ``err.trace``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"dry_run() takes an nn.Module, got {type(model).__name__}")
    if len(inputs) == 1 and type(inputs[0]) is tuple:
        inputs = inputs[0]
    if dtype is not None and not isinstance(dtype, torch.dtype):
        kinds = ", ".join(k for k in _KINDS if _KINDS[k] is not None)
        raise SpecError(f"dry_run(dtype=...): expected a torch.dtype (torch.float64, …), got {dtype!r}; or give a "
                        f"kind word in a spec, e.g. 'bs=4,T=30 float64' (kinds: {kinds})")
    guessed = ""
    if not inputs and not named_inputs:  # as the first layer takes it: (T, bs) seq-first, (bs,) a cell's step
        first = _first_layer(model)
        t_axis = conventions(first).layout.t_axis if is_recurrent(first) else 1
        inputs = ("bs=2" if t_axis is None else "T=5,bs=2" if t_axis == 0 else "bs=2,T=5",)
        if first is not model:  # a bare layer: the input built is the layer's own, no guess
            guessed = f"{type(first).__name__}({first.extra_repr()})" if first is not None else "no layer"
    given = [("", i, v) for i, v in enumerate(inputs)] + [(k, k, v) for k, v in named_inputs.items()]
    built: dict[int | str, Any] = {}
    shown: list[DryInput] = []
    first_names: tuple[str, ...] | None = None  # the first spec's names, when the first input is a spec
    named: list[tuple[torch.Tensor, tuple[str, ...]]] = []  # each input built from a spec, with its own names
    every: dict[str, int] = {}  # each name's size in the specs (vocab too)
    conflicts: set[str] = set()  # names with two sizes in two specs (bs=6 and bs=4): declared for none
    follow: torch.dtype | None = None
    cpu_inputs: list[tuple[torch.Tensor, torch.Tensor]] = []  # lengths: torch reads them on the CPU
    for n, (keyword, key, value) in enumerate(given):
        where = f"dry_run({keyword}=...)" if keyword else f"dry_run(input {key})"
        if not _is_spec(value):
            built[key] = x = _meta_value(value, cpu_inputs)
            prefix = keyword or ("" if isinstance(x, torch.Tensor) else f"arg{key}")  # nested: arg1.0, batch.x
            for path, t, _ in flatten(x, prefix):  # a tensor, or each one in a dict, list or tuple
                t = t[0] if isinstance(t, tuple) else t  # a run of equal tensors in a list: shown once
                shown.append(DryInput(path, tuple(t.shape), ("",) * t.dim(), t.dtype))
            continue
        x, names, sizes = _build(model, value, vocab, dtype, follow, where)
        built[key] = x = name_dims(x, " ".join(names))  # sv.name: the checks read these names as the trace does
        shown.append(DryInput(keyword, tuple(x.shape), names, x.dtype))
        named.append((x, names))
        if n == 0:
            first_names = names
        follow = follow or x.dtype
        for name, size in sizes.items():
            if every.setdefault(name, size) != size:
                conflicts.add(name)
    outer = dict(declared() or {})  # the caller's own sv.dims
    first = {k: v for k, v in zip(first_names or (), shown[0].shape if shown else ()) if k not in conflicts}
    for name, size in first.items():
        if outer.get(name, size) != size:
            raise SpecError(f"dry_run: {name}={size} in the first input's spec, but sv.dims declared "
                            f"{name}={outer[name]}")
    extra = {k: v for k, v in every.items() if k not in conflicts and k not in first}
    args = [built[i] for i in range(len(inputs))]
    kwargs = {k: built[k] for k in named_inputs}
    _fits_forward(model, args, kwargs)
    # the first input's names name the model's input for the checks, unless another spec gives one of them
    # another size: then the sizes no spec contradicts are declared, and each input is named by its own spec
    spec = " ".join(first_names) if first_names is not None and not conflicts & set(first_names) else None
    by_size = {k: v for k, v in outer.items() if k not in (first_names or ())}  # a size match alone: a guess
    stand_ins = _stand_ins(model)
    sizes = {**first, **extra}
    run = DryRun(model=type(model).__name__, inputs=tuple(shown), trace=None, sizes=sizes,
                 stand_ins=len(stand_ins), guessed=guessed)
    with ExitStack() as stack:
        stack.enter_context(_left_as_it_was(model, stand_ins))
        stack.enter_context(META)  # tensors the forward makes with no device: meta
        stack.enter_context(MetaMode(cpu_inputs))  # ... and those that name one, or move to one
        stack.enter_context(checking(inputs=spec))
        if extra:
            stack.enter_context(dims(**extra))
        try:
            run.trace = trace_named(model, tuple(args), kwargs, named, first, by_size)
        except ShapeError as err:
            run.error = err
            run.trace = getattr(err, "shapeviz_trace", None)
        except DryRunError as err:
            err.keep(getattr(err, "shapeviz_trace", None))
            raise
    return run
