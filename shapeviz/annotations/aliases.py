"""jaxtyping aliases for PyTorch's recurrent shape conventions, and the ``@check`` decorator.

>>> import torch
>>> from shapeviz.annotations.aliases import Hidden, Seq, check
>>> @check
... def last(x: Seq, h: Hidden) -> Hidden:
...     return h
>>> last(torch.zeros(5, 3, 10), torch.zeros(2, 3, 20)).shape
torch.Size([2, 3, 20])

The aliases are ordinary jaxtyping types, so they also work with
``jaxtyped(typechecker=beartype)`` (where jaxtyping can evaluate them: it checks a symbolic dim
such as ``layers*D`` only once ``layers`` and ``D`` are bound by an earlier argument).
``@check`` reads the same annotations, solves symbolic dims from whichever argument is bound (and
from the module's configuration and ``sv.dims``), and blames the argument that is really wrong.

=====================  =========================  =================================================
alias                  dims                       meaning
=====================  =========================  =================================================
``Seq``                ``T bs emb``               a sequence, seq-first (PyTorch's default layout)
``SeqBatchFirst``      ``bs T emb``               a sequence for a ``batch_first=True`` layer
``Step``               ``bs emb``                 one time step: a cell's input
``StepHidden``         ``bs h``                   a cell's state (and an RNN loop's carried state)
``Hidden``             ``layers*D bs h``          a layer's h_0/h_n (and an LSTM's c_0/c_n)
``HiddenProj``         ``layers*D bs proj``       an LSTM's h_0/h_n when ``proj_size`` is set
``Output``             ``T bs D*h``               a layer's output, seq-first
``OutputBatchFirst``   ``bs T D*h``               a layer's output, ``batch_first=True``
``OutputProj``         ``T bs D*proj``            an LSTM's output when ``proj_size`` is set
``Tokens``             ``bs T``                   a batch of token ids, as a data loader yields it
``Logits``             ``T*bs vocab``             a language model's logits, all steps stacked
=====================  =========================  =================================================

The dim strings are those of :mod:`shapeviz.core.model` (a test keeps them equal).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast

import torch.nn as nn
from jaxtyping import Float, Int
from torch import Tensor

from shapeviz._errors import ShapeError, SpecError
from shapeviz.annotations import explainer
from shapeviz.annotations.explainer import Seed, explain_mismatch
from shapeviz.annotations.signature import Signature, compile_signature
from shapeviz.annotations.solver import resolve
from shapeviz.core.dimensions import declared
from shapeviz.core.model import Conventions, conventions, is_recurrent
from shapeviz.runtime.switches import env_disabled, is_compiling

__all__ = [
    "Hidden",
    "HiddenProj",
    "Logits",
    "Output",
    "OutputBatchFirst",
    "OutputProj",
    "Seq",
    "SeqBatchFirst",
    "Step",
    "StepHidden",
    "Tokens",
    "check",
]

Seq = Float[Tensor, "T bs emb"]
"""A sequence, seq-first: (T, bs, emb) — what ``nn.RNN/LSTM/GRU`` take by default."""

SeqBatchFirst = Float[Tensor, "bs T emb"]
"""A sequence, batch-first: (bs, T, emb) — what a ``batch_first=True`` layer takes."""

Step = Float[Tensor, "bs emb"]
"""One time step of a batch: (bs, emb) — a cell's input, ``x[t]`` of a hand-written loop."""

StepHidden = Float[Tensor, "bs h"]
"""A cell's state: (bs, h) — what ``nn.RNNCell`` takes and returns, the state a loop carries."""

Hidden = Float[Tensor, "layers*D bs h"]
"""A layer's state: (layers*D, bs, h) — h_0/h_n (and c_0/c_n of an LSTM). Never batch-first."""

HiddenProj = Float[Tensor, "layers*D bs proj"]
"""An LSTM's h_0/h_n with ``proj_size``: (layers*D, bs, proj) (its c stays (layers*D, bs, h))."""

Output = Float[Tensor, "T bs D*h"]
"""A layer's output, seq-first: (T, bs, D*h) — the top layer's h at every step, both directions."""

OutputBatchFirst = Float[Tensor, "bs T D*h"]
"""A layer's output, batch-first: (bs, T, D*h)."""

OutputProj = Float[Tensor, "T bs D*proj"]
"""An LSTM's output with ``proj_size``, seq-first: (T, bs, D*proj)."""

Tokens = Int[Tensor, "bs T"]
"""A batch of token ids: (bs, T), integer dtype — transpose to (T, bs) before embedding/one-hot."""

Logits = Float[Tensor, "T*bs vocab"]
"""A language model's logits: (T*bs, vocab) — the steps stacked, as the d2l models return them."""


F = TypeVar("F", bound=Callable[..., Any])

# id(module) -> (weak ref, its size attributes, the sizes they give); the ref drops the entry when the
# module dies (a WeakKeyDictionary lookup builds a weak reference on every call: this is a hot path)
_module_cache: dict[int, tuple[weakref.ref, tuple[Any, ...], dict[str, int]]] = {}


def _forget_module(mid: int, ref: weakref.ref) -> None:
    hit = _module_cache.get(mid)
    if hit is not None and hit[0] is ref:
        del _module_cache[mid]
_NO_ATTRS = (None,) * 6
_recurrent_types: dict[type, bool] = {}


def module_sizes(module: Any) -> dict[str, int] | None:
    """Named sizes a module's configuration fixes: ``conventions(module).sizes`` for a recurrent
    module, else what its ``input_size/hidden_size/num_layers/bidirectional/proj_size`` (and
    ``vocab_size`` -> ``vocab``) attributes give, read through :class:`Conventions`.

    >>> module_sizes(nn.LSTM(10, 20, num_layers=2, bidirectional=True))
    {'emb': 10, 'h': 20, 'layers': 2, 'D': 2}
    """
    recurrent = _recurrent_types.get(type(module))
    if recurrent is None:
        if not isinstance(module, nn.Module):
            return None
        recurrent = _recurrent_types.setdefault(type(module), is_recurrent(module))
    if recurrent:
        return conventions(module).sizes
    d = module.__dict__
    key = (d.get("input_size"), d.get("hidden_size"), d.get("num_layers"), d.get("bidirectional"),
           d.get("proj_size"), d.get("vocab_size"))
    if key == _NO_ATTRS:
        return None
    hit = _module_cache.get(id(module))
    if hit is not None and hit[1] == key and hit[0]() is module:
        return hit[2]
    sizes = _sizes_from_attrs(*key)
    mid = id(module)
    _module_cache[mid] = (weakref.ref(module, lambda ref: _forget_module(mid, ref)), key, sizes)
    return sizes


def _sizes_from_attrs(emb: Any, h: Any, layers: Any, bidir: Any, proj: Any, vocab: Any) -> dict[str, int]:
    def ok(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0
    sizes: dict[str, int] = {}
    if ok(emb) or ok(h):
        proj = proj if ok(proj) and proj else 0
        conv = Conventions("LSTM" if proj else "RNN", cell=not ok(layers) and not isinstance(bidir, bool) and not proj,
                           input_size=emb if ok(emb) else 1, hidden_size=h if ok(h) else 1,
                           num_layers=layers if ok(layers) else 1, bidirectional=bool(bidir),
                           proj_size=proj, label="attributes")
        sizes = dict(conv.sizes)
        if not ok(emb):
            del sizes["emb"]
        if not ok(h):
            del sizes["h"]
        if not ok(layers):
            sizes.pop("layers", None)
        if not isinstance(bidir, bool):
            sizes.pop("D", None)
    if ok(vocab):
        sizes["vocab"] = vocab
    return sizes




def _module_label(module: nn.Module) -> str:
    if is_recurrent(module):
        return conventions(module).label
    return type(module).__name__


def _seeds(sig: Signature, values: Any) -> list[Seed]:
    out: list[Seed] = []
    if sig.is_method and values:
        sizes = module_sizes(values[0])
        if sizes:
            where = f"the module's config ({_module_label(values[0])})"
            out.extend((n, v, where) for n, v in sizes.items())
    d = declared()
    if d:
        out.extend((n, v, "sv.dims") for n, v in d.items())
    return out


def check(fn: F) -> F:
    """Check a function's annotations on every call: arrays with shapeviz's solver, the rest with beartype's rules.

    >>> import torch
    >>> @check
    ... def step(x: Step, h: StepHidden) -> StepHidden:
    ...     return h
    >>> step(torch.zeros(3, 10), torch.zeros(3, 20)).shape   # bs=3, emb=10, h=20
    torch.Size([3, 20])
    >>> step(torch.zeros(3, 10), torch.zeros(4, 20))
    Traceback (most recent call last):
    ...
    shapeviz.ShapeError: [annotation] @check step: argument `h`
    ...
    >>> @check
    ... def scaled(x: Step, scale: float) -> Step:
    ...     return x * scale
    >>> scaled(torch.zeros(3, 10), 2).shape     # (bs=3, emb=10); an int passes for a float (PEP 484)
    torch.Size([3, 10])
    >>> scaled(torch.zeros(3, 10), "2")
    Traceback (most recent call last):
    ...
    shapeviz.ShapeError: [annotation] @check scaled: argument `scale`
    ...

    Names bind consistently across the arguments and the return value; symbolic dims
    (``layers*D``, ``D*h``, ``T*bs``) are solved from whichever operand binds their factors; on a
    method of an ``nn.Module`` the module's configuration (``conventions(self).sizes``, or plain
    ``num_layers/bidirectional/hidden_size/input_size`` attributes) and sizes declared with
    ``sv.dims(...)`` bind names before the arguments do. A failure raises
    :class:`~shapeviz.ShapeError` naming the argument, the dim, where it was bound, the bindings
    and a fix; a malformed annotation raises :class:`~shapeviz.SpecError` at decoration time.

    Parameters and return values that are not arrays (``n: int``, ``mode: Literal["tanh", "relu"]``,
    ``lengths: list[int] | None``, ``-> None``) are checked as ``jaxtyped(typechecker=beartype)``
    checks them, with PEP 484's numeric tower on (an ``int`` passes for a ``float``); a failure is
    the same ``ShapeError`` (code ``annotation``) with beartype's reason. Not checked: a parameter
    whose value is its default object; an async function's return value; a hint beartype cannot
    check (``typing.Self``, ``ClassVar``, an array annotation inside ``list[...]`` or ``dict[...]``).
    Those are listed with the reason in ``wrapper.__shapeviz_signature__.unchecked``. While dynamo
    traces (``torch.compile``), hints beartype checks by itself (``list[int]``, ``dict[str, int]``:
    anything but classes and ``Literal``) are left out, as dynamo cannot trace beartype's random pick
    of a container's item; eager calls check them.
    """
    try:
        sig = compile_signature(fn)
    except NameError:  # forward references: compile on the first call instead
        return _lazy(fn)
    return _build(fn, sig)


def _lazy(fn: F) -> F:
    built: list[Callable[..., Any]] = []

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not built:
            try:
                built.append(_build(fn, compile_signature(fn)))
            except NameError as e:
                raise SpecError(f"sv.check: cannot read the annotations of {fn.__qualname__}: {e}") from e
            wrapper.__shapeviz_signature__ = built[0].__shapeviz_signature__  # type: ignore[attr-defined]
        return built[0](*args, **kwargs)

    return cast(F, wrapper)


def _build(fn: F, sig: Signature) -> F:
    label = f"@check {getattr(fn, '__qualname__', fn)}"
    n_slots = len(sig.slots)
    slot_items = tuple(sig.slots.items())
    args_check = sig.args_check
    result_check = sig.result_check
    is_method = sig.is_method
    bind = sig.bind
    final_in = result_check is None
    traced = sig.traced

    def explained(values: Any, result: Any = None, has_result: bool = False) -> ShapeError:
        where = label
        if is_method and values and isinstance(values[0], nn.Module):
            where = f"{label} ({_module_label(values[0])})"
        return explain_mismatch(sig, where, values, _seeds(sig, values), result, has_result)

    def fail(values: Any, result: Any = None, has_result: bool = False) -> None:
        if is_compiling():
            raise explainer.run_eagerly(explained, values, result, has_result)
        raise explained(values, result, has_result)

    def checked_call(a_check: Any, r_check: Any, values: Any, env: list[Any], pending: list[Any],
                     args: Any, kwargs: Any) -> Any:
        if a_check is not None and not a_check(values, env, pending):
            fail(values)
        if pending and resolve(pending, env, r_check is None) is not None:
            fail(values)
        out = fn(*args, **kwargs)
        if r_check is not None and (not r_check(out, env, pending) or (pending and resolve(pending, env, True)
                                                                        is not None)):
            fail(values, out, True)
        return out

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if env_disabled():
            return fn(*args, **kwargs)
        values = bind(args, kwargs)
        if values is None:
            return fn(*args, **kwargs)  # let Python raise its own TypeError
        env: list[Any] = [None] * n_slots
        pending: list[Any] = []
        if not is_compiling():
            if is_method:
                sizes = module_sizes(values[0])
                if sizes:
                    for name, slot in slot_items:
                        size = sizes.get(name)
                        if size is not None:
                            env[slot] = size
            d = declared()
            if d:
                for name, slot in slot_items:
                    size = d.get(name)
                    if size is not None and env[slot] is None:
                        env[slot] = size
        elif traced is not None:  # dynamo traces this: the checks without beartype's probes
            return checked_call(traced[0], traced[1], values, env, pending, args, kwargs)
        if args_check is not None and not args_check(values, env, pending):
            fail(values)
        if pending and resolve(pending, env, final_in) is not None:
            fail(values)
        out = fn(*args, **kwargs)
        if result_check is not None and (
                not result_check(out, env, pending) or (pending and resolve(pending, env, True) is not None)):
            fail(values, out, True)
        return out

    wrapper.__shapeviz_signature__ = sig  # type: ignore[attr-defined]
    return cast(F, wrapper)
