"""Parse the text a user gives the command line: a layer SPEC such as ``"LSTM(10, 20, num_layers=2)"``
into the module, safely, and ``--input`` SIZES such as ``"bs=2,T=5,vocab=28"`` into a model's input.

>>> lstm = parse_spec("LSTM(10, 20, num_layers=2, bidirectional=True)")
>>> lstm.num_layers, lstm.bidirectional, tuple(lstm.weight_ih_l0.shape)      # (4*h, emb)
(2, True, (80, 10))
>>> parse_spec("GRUCell(8, 16)").hidden_size
16

The text is read with :mod:`ast` and never evaluated: only a call of one of the six recurrent
classes (optionally written ``nn.X`` or ``torch.nn.X``) with literal arguments (numbers,
``True``/``False``, a string for ``nonlinearity``) is accepted, and every keyword and value is
checked before the module is built. Anything else raises :class:`~shapeviz._errors.SpecError`
with a message that lists what is valid. torch is imported only to build the module, so a spec
that is refused costs no ``import torch`` (``shapeviz explain "Linear(3, 4)"`` answers at once).

``--input`` names only the dims of :data:`INPUT_DIMS`; another name is a usage error that says
which one was likely meant (:func:`did_you_mean`), before the user's file is imported.
"""

from __future__ import annotations

import ast
import difflib
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shapeviz._errors import SpecError
from shapeviz.apps.failures import UsageError, memory_bytes, shorten
from shapeviz.core.limits import MAX_LAYERS, MAX_SIZE

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

__all__ = ["CLASSES", "INPUT_DIMS", "MAX_PARAMETERS", "MAX_SIZE", "MAX_SPEC_CHARS", "did_you_mean", "make_input",
           "parse_input", "parse_spec", "spec_help"]

MAX_SPEC_CHARS = 300
"""Longer spec text is refused before parsing (a layer spec is short)."""

MAX_PARAMETERS = 50_000_000
"""A spec whose layer would hold more weights than this is refused (about 200 MB of float32),
unless it is built on the ``meta`` device, which allocates nothing."""



@dataclass(frozen=True)
class _Class:
    name: str  # the class in torch.nn
    params: tuple[str, ...]  # in PyTorch's positional order

    @property
    def cls(self) -> type[nn.Module]:
        """The ``torch.nn`` class (imports torch).

        >>> CLASSES["GRUCell"].cls
        <class 'torch.nn.modules.rnn.GRUCell'>
        """
        import torch.nn as nn

        cls: type[nn.Module] = getattr(nn, self.name)
        return cls

    @property
    def gates(self) -> int:
        """Gates of the family (:data:`shapeviz.core.model.GATES`): weights are ``(gates*h, …)``."""
        from shapeviz.core.model import GATES

        return GATES[self.name.removesuffix("Cell")]


_RNN_TAIL = ("num_layers", "nonlinearity", "bias", "batch_first", "dropout", "bidirectional")
_LAYER_TAIL = ("num_layers", "bias", "batch_first", "dropout", "bidirectional")

CLASSES: dict[str, _Class] = {
    "RNN": _Class("RNN", ("input_size", "hidden_size", *_RNN_TAIL)),
    "LSTM": _Class("LSTM", ("input_size", "hidden_size", *_LAYER_TAIL, "proj_size")),
    "GRU": _Class("GRU", ("input_size", "hidden_size", *_LAYER_TAIL)),
    "RNNCell": _Class("RNNCell", ("input_size", "hidden_size", "bias", "nonlinearity")),
    "LSTMCell": _Class("LSTMCell", ("input_size", "hidden_size", "bias")),
    "GRUCell": _Class("GRUCell", ("input_size", "hidden_size", "bias")),
}
"""The classes a spec may name, with their arguments in PyTorch's positional order."""

_BOOLS = frozenset({"bias", "batch_first", "bidirectional"})
_EXAMPLES = 'e.g. "LSTM(10, 20, num_layers=2, bidirectional=True)" or "GRUCell(8, 16)"'


def spec_help() -> str:
    """One paragraph listing the valid classes and their arguments (used in error messages).

    >>> spec_help().splitlines()[1]
    '  RNN(input_size, hidden_size, num_layers, nonlinearity, bias, batch_first, dropout, bidirectional)'
    """
    lines = ["valid specs call one of these classes with literal arguments:"]
    lines += [f"  {name}({', '.join(c.params)})" for name, c in CLASSES.items()]
    lines.append(f"sizes are positive ints up to {MAX_SIZE:,}, 1 <= num_layers <= 100, 0 <= proj_size < hidden_size, "
                 "0 <= dropout <= 1, bias/batch_first/bidirectional are True or False, nonlinearity is "
                 f"'tanh' or 'relu'; {_EXAMPLES}")
    return "\n".join(lines)


def _fail(text: str, why: str) -> SpecError:
    return SpecError(f"bad layer spec {text!r}: {why}\n{spec_help()}")


def _class_name(text: str, func: ast.expr) -> str:
    parts: list[str] = []
    node = func
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    else:
        raise _fail(text, "the spec must be a call of a class name such as LSTM(...)")
    dotted = ".".join(reversed(parts))
    name = parts[0]
    prefix = dotted[: -len(name)]
    if prefix not in ("", "nn.", "torch.nn.") or name not in CLASSES:
        raise _fail(text, f"unknown class {dotted!r}")
    return name


def _literal(text: str, node: ast.expr, what: str) -> Any:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float):
        value: int | float = node.operand.value  # type: ignore[assignment]  # checked just above
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Constant) and type(node.value) in (int, float, bool, str):
        return node.value
    raise _fail(text, f"{what} must be a literal (a number, True/False or a quoted string), "
                      f"got the expression {_source(node)!r}")


def _source(node: ast.AST) -> str:
    try:
        out = ast.unparse(node)
    except Exception:  # pragma: no cover - unparse handles every parsed node
        out = type(node).__name__
    return out if len(out) <= 60 else out[:57] + "..."


def _check_value(text: str, cls: str, key: str, value: Any) -> Any:
    if type(value) is int and value > MAX_SIZE:
        raise _fail(text, f"{key} must be at most {MAX_SIZE:,}, got {value:,}")
    if key in ("input_size", "hidden_size"):
        if type(value) is not int or value < 1:
            raise _fail(text, f"{key} must be a positive int, got {value!r}")
    elif key == "num_layers":
        if type(value) is not int or not 1 <= value <= MAX_LAYERS:
            raise _fail(text, f"num_layers must be an int from 1 to {MAX_LAYERS}, got {value!r}")
    elif key == "proj_size":
        if type(value) is not int or value < 0:
            raise _fail(text, f"proj_size must be an int >= 0, got {value!r}")
    elif key == "dropout":
        if type(value) not in (int, float) or not 0 <= value <= 1:
            raise _fail(text, f"dropout must be a number between 0 and 1, got {value!r}")
        value = float(value)
    elif key in _BOOLS:
        if type(value) is not bool:
            raise _fail(text, f"{key} must be True or False, got {value!r}")
    elif key == "nonlinearity" and value not in ("tanh", "relu"):
        raise _fail(text, f"nonlinearity must be 'tanh' or 'relu', got {value!r}")
    return value


def _parameter_count(c: _Class, kw: dict[str, Any]) -> int:
    emb, h = kw["input_size"], kw["hidden_size"]
    proj = kw.get("proj_size", 0) or h
    layers, D = kw.get("num_layers", 1), 2 if kw.get("bidirectional", False) else 1
    g, hr = c.gates, proj * h if kw.get("proj_size", 0) else 0
    first = g * h * (emb + proj + 2) + hr
    rest = g * h * (D * proj + proj + 2) + hr
    return D * (first + (layers - 1) * rest)


def parse_spec(text: str, *, device: str | torch.device | None = None) -> nn.Module:
    """Build the recurrent module a spec names, without evaluating the text.

    >>> gru = parse_spec("nn.GRU(8, 16, batch_first=True)")
    >>> gru.batch_first, tuple(gru.weight_hh_l0.shape)                      # (3*h, h)
    (True, (48, 16))

    ``device="meta"`` builds it without allocating weights (enough for ``explain`` and
    ``unroll``). Raises :class:`SpecError` for anything but one allowed class called with valid
    literal arguments.
    """
    if not isinstance(text, str):
        raise SpecError(f"a layer spec is text such as {_EXAMPLES}, got {type(text).__name__}")
    if len(text) > MAX_SPEC_CHARS:
        raise _fail(text[:40] + "...", f"the spec is {len(text)} characters long (at most {MAX_SPEC_CHARS})")
    if not text.strip():
        raise _fail(text, "the spec is empty")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise _fail(text, f"not a Python call ({type(exc).__name__}: {getattr(exc, 'msg', None) or exc})") from None
    call = tree.body
    if not isinstance(call, ast.Call):
        raise _fail(text, "the spec must be a call such as LSTM(10, 20)")
    name = _class_name(text, call.func)
    c = CLASSES[name]
    if len(call.args) > len(c.params):
        raise _fail(text, f"{name} takes at most {len(c.params)} positional arguments, got {len(call.args)}")
    kw: dict[str, Any] = {}
    for key, node in zip(c.params, call.args):
        if isinstance(node, ast.Starred):
            raise _fail(text, "*args are not allowed")
        kw[key] = _literal(text, node, key)
    for k in call.keywords:
        if k.arg is None:
            raise _fail(text, "**kwargs are not allowed")
        if k.arg not in c.params:
            raise _fail(text, f"{name} has no argument {k.arg!r}; its arguments are {', '.join(c.params)}")
        if k.arg in kw:
            raise _fail(text, f"{k.arg} is given twice")
        kw[k.arg] = _literal(text, k.value, k.arg)
    missing = [p for p in ("input_size", "hidden_size") if p not in kw]
    if missing:
        raise _fail(text, f"{name} needs {' and '.join(missing)}")
    kw = {k: _check_value(text, name, k, v) for k, v in kw.items()}
    if kw.get("proj_size", 0) >= kw["hidden_size"]:
        raise _fail(text, f"proj_size must be smaller than hidden_size={kw['hidden_size']}, got {kw['proj_size']}")
    import torch  # the spec is valid: now build it

    if torch.device(device or "cpu").type != "meta":
        n = _parameter_count(c, kw)
        if n > MAX_PARAMETERS:
            raise _fail(text, f"this layer would hold about {n:,} weights (at most {MAX_PARAMETERS:,})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout with one layer, proj_size on oneDNN: not our concern
        try:
            return c.cls(**kw, device=device)
        except (ValueError, TypeError, RuntimeError) as exc:  # pragma: no cover - checked above
            raise _fail(text, str(exc)) from None


# ====================================================================== --input SIZES
INPUT_DIMS: dict[str, str] = {"T": "sequence length", "bs": "batch size", "emb": "features per step",
                              "vocab": "vocabulary size, for token ids"}
"""The dim names ``--input`` knows; any other name is a usage error (``vocb``: did you mean vocab?)."""

_INPUT_ALIASES = {"l": "T", "seq_len": "T", "seq": "T", "time": "T", "n": "bs", "batch": "bs", "batch_size": "bs",
                  "h_in": "emb", "input_size": "emb", "features": "emb", "vocab_size": "vocab",
                  "num_embeddings": "vocab"}
"""Other spellings of :data:`INPUT_DIMS` (lower case), PyTorch's docs notation among them: suggested, never taken."""


def did_you_mean(word: str, known: Iterable[str], aliases: dict[str, str] | None = None) -> str | None:
    """The one of ``known`` that ``word`` most likely misspells: same letters in another case, an
    alias, or a close spelling (:mod:`difflib`); None when nothing is close.

    >>> did_you_mean("--t", ["--T", "--bs", "--style"]), did_you_mean("vocb", INPUT_DIMS)
    ('--T', 'vocab')
    >>> did_you_mean("batch_size", INPUT_DIMS, _INPUT_ALIASES), did_you_mean("colour", INPUT_DIMS)
    ('bs', None)
    """
    by_lower = {k.lower(): k for k in known}
    low = word.lower()
    if low in by_lower:
        return by_lower[low]
    if aliases and low in aliases:
        return aliases[low]
    close = difflib.get_close_matches(low, list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def make_input(model: Any, sizes: dict[str, int]) -> tuple[torch.Tensor, str, dict[str, int]]:
    """The input for ``--input`` sizes: (tensor, its dim names, sizes to declare).

    The layout rule is :func:`shapeviz.runtime.dryrun.meta_inputs`'s; this fills it with real values.

    >>> import torch.nn as nn
    >>> x, names, decl = make_input(nn.GRU(8, 16), {"T": 5, "bs": 2})
    >>> tuple(x.shape), names                                 # emb=input_size appended
    ((5, 2, 8), 'T bs emb')
    >>> x, names, decl = make_input(nn.Embedding(28, 4), {"bs": 2, "T": 5})
    >>> x.dtype, tuple(x.shape), decl                          # token ids (bs, T)
    (torch.int64, (2, 5), {'vocab': 28})
    """
    import torch

    from shapeviz.runtime.dryrun import meta_inputs

    if not set(sizes) - {"vocab"}:
        raise UsageError("--input names no dims besides vocab; write e.g. 'bs=2,T=5,vocab=28'")
    meta, names, declared = meta_inputs(model, dict(sizes))
    shape = tuple(meta.shape)
    nbytes = math.prod(shape) * (8 if "vocab" in declared else meta.element_size())
    text = ", ".join(f"{n}={s}" for n, s in zip(names, shape))
    memory = memory_bytes()
    if memory is not None and nbytes > memory // 2:
        raise UsageError(f"--input: the input ({text}) needs {nbytes / 2**30:.3g} GiB, more than half of this "
                          f"machine's memory ({memory / 2**30:.3g} GiB); use smaller sizes or check --meta")
    g = torch.Generator().manual_seed(0)
    try:
        if "vocab" in declared:
            x = torch.randint(0, declared["vocab"], shape, generator=g)
            return x, " ".join(names), {"vocab": declared["vocab"]}
        return torch.randn(*shape, generator=g, dtype=meta.dtype), " ".join(names), {}
    except (MemoryError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"--input: cannot allocate the input ({text}): {shorten(reason, 160)}; use smaller "
                          "sizes or check --meta") from None


def parse_input(text: str) -> dict[str, int]:
    """``--input`` text as sizes, refusing names outside :data:`INPUT_DIMS` and sizes below 1.

    >>> parse_input("bs=2,T=5,vocb=28")
    Traceback (most recent call last):
    ...
    shapeviz.apps.failures.UsageError: --input: unknown dim name 'vocb' in 'bs=2,T=5,vocb=28' (did you mean vocab?); ...
    """
    from shapeviz.core.dimensions import parse_sizes

    sizes = parse_sizes(text, "--input")
    for name in sizes:
        if name not in INPUT_DIMS:
            guess = did_you_mean(name, INPUT_DIMS, _INPUT_ALIASES)
            known = ", ".join(f"{k} ({what})" for k, what in INPUT_DIMS.items())
            raise UsageError(f"--input: unknown dim name {name!r} in {text!r}"
                             f"{f' (did you mean {guess}?)' if guess else ''}; the names are {known}")
    zero = [k for k, v in sizes.items() if v < 1]
    if zero:
        raise UsageError(f"--input: sizes must be at least 1, got {', '.join(f'{k}=0' for k in zero)} in {text!r}")
    return sizes
