"""Where a call ran and what its operands are called: the line of your code, its variables' names.

>>> import sys, torch
>>> X = torch.zeros(2)
>>> FrameLabels(sys._getframe(), {}).name_of(X)
'X'
>>> arg_label("1.0", ("x", "state"))
'state[0]'
"""

from __future__ import annotations

import inspect
import linecache
import os
import sys
from collections.abc import Sequence
from types import FrameType, FunctionType
from typing import Any

import torch
import torch.nn as nn

from shapeviz.core.compiling import dynamo_compiling
from shapeviz.core.frames import is_library, is_torch, torch_dir
from shapeviz.core.model import RECURRENT_TYPES

__all__ = ["FrameLabels", "arg_label", "as_torch_call", "attr_label", "call_as_caller", "dynamo_skip", "first_keyword",
           "forward_params", "label", "site_of", "tensor_attrs", "type_name", "user_frame"]

_PARAMS: dict[Any, tuple[str, ...]] = {}


def forward_params(obj: Any) -> tuple[str, ...]:
    """The names of a module's ``forward`` (or a callable's) positional parameters; cached per class."""
    key = type(obj) if isinstance(obj, nn.Module) else None
    hit = _PARAMS.get(key) if key is not None else None
    if hit is None:
        fn = obj.forward if isinstance(obj, nn.Module) else obj
        try:
            params = inspect.signature(fn).parameters.values()
            hit = tuple(p.name if p.kind is not p.VAR_POSITIONAL else f"*{p.name}" for p in params
                        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL))
        except (TypeError, ValueError):
            hit = ()
        if key is not None:
            _PARAMS[key] = hit
    return hit


def as_torch_call(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any], dict]:
    """A recurrent module's call as torch's ``forward(input, hx=None)`` takes it, read by the module's own
    ``forward`` parameters, and its other arguments by name: a subclass's ``forward(x, lengths=None, hx=None)``
    called ``(x, lens, hx=h)`` is ``(x, h)``, with ``lengths`` beside it (never read as the state).

    >>> import torch.nn as nn
    >>> class Mine(nn.GRU):
    ...     def forward(self, x, lengths=None, hx=None):
    ...         return super().forward(x, hx)
    >>> as_torch_call(Mine(2, 3), ("x", "lens"), {"hx": "h"}), as_torch_call(nn.GRU(2, 3), ("x", "h"), {})
    ((('x', 'h'), {}, {'lengths': 'lens'}), (('x', 'h'), {}, {}))
    """
    params = forward_params(module)
    if not isinstance(module, RECURRENT_TYPES) or params[:2] == ("input", "hx") or not params \
            or any(p.startswith("*") for p in params) or len(args) > len(params):
        return args, kwargs, {}  # torch's own forward (a declared layer's: input, state), or one not read by name
    given = {**dict(zip(params, args)), **kwargs}
    state = "hx" if "hx" in params else params[1] if len(params) > 1 and params[1] in _STATE_NAMES else None
    x, hx = given.pop(params[0], None), given.pop(state, None) if state else None
    return ((x,) if hx is None else (x, hx)), {}, {k: v for k, v in given.items() if v is not None}


_STATE_NAMES = frozenset({"h", "h0", "h_0", "hx", "hc", "hidden", "state", "states", "hidden_state"})
"""What a subclass's forward may call its state in the second place (any other name there is not read as it)."""


def arg_label(key: str, arg_names: Sequence[str]) -> str:
    """``"1.0"`` with parameters ``("x", "state")`` -> ``"state[0]"``; kwargs keep their key (``("*",)``); a
    ``*rest`` parameter (:func:`forward_params`) takes every argument from its place on, by its index in it.

    >>> arg_label("1.0", ("x", "*rest")), arg_label("0", ("*args",)), arg_label("0:2", ("*args",))
    ('rest[0][0]', 'args[0]', '')
    """
    head, _, rest = key.partition(".")
    if arg_names == ("*",):
        name = head
    elif head.isdigit():
        i = int(head)
        var = next((k for k, n in enumerate(arg_names) if n.startswith("*")), None)
        if var is not None and i >= var:
            name = f"{arg_names[var][1:]}[{i - var}]"
        elif i < len(arg_names):
            name = arg_names[i]
        else:
            return ""
    else:  # a run of equal shapes ("0:2"), or no parameters known
        return ""
    rest = "".join(f"[{p}]" for p in rest.split(".") if p and p not in ("data", "batch_sizes"))
    return name + rest


def type_name(obj: Any) -> str:
    """The class name of a module or object, the ``__name__`` of a function."""
    if isinstance(obj, nn.Module):  # first: a module's attribute lookup of a missing name is slow
        return type(obj).__name__
    if isinstance(obj, type):
        return obj.__name__
    if callable(obj) and hasattr(obj, "__name__"):
        return str(obj.__name__)
    return type(obj).__name__


_WRAPPERS = tuple(os.path.join(torch_dir(), *f.split("/")) for f in (
    "overrides.py", "_tensor.py", "functional.py", "nn/functional.py", "utils/_device.py",
    "_jit_internal.py", "utils/_contextlib.py", "autograd/grad_mode.py", "_compile.py"))


_CODE_KINDS: dict[int, tuple[Any, int]] = {}
"""id(code object) -> (the code, _YOURS, _WRAPPER (shapeviz, torch's dispatch wrappers) or _TORCH). Keyed by id: a
code object's own hash is computed anew from its fields at each lookup (a hot path); the code kept in the value
keeps its id from being reused while it is cached."""
_YOURS, _WRAPPER, _TORCH = 0, 1, 2


def _code_kind(code: Any) -> int:
    fn = code.co_filename
    kind = _YOURS if not is_library(fn) else _TORCH if is_torch(fn) and not fn.startswith(_WRAPPERS) else _WRAPPER
    if len(_CODE_KINDS) >= 8192:
        _CODE_KINDS.clear()
    _CODE_KINDS[id(code)] = (code, kind)
    return kind


def user_frame(direct: bool = False) -> FrameType | None:
    """The innermost frame outside torch and shapeviz: the line of your code that ran the op.

    ``direct=True``: None when a torch function (not just a dispatch wrapper such as
    ``Tensor.__matmul__`` or ``F.embedding``) stands between your code and the op: an op that
    ``pack_padded_sequence`` runs for you is not one of yours."""
    f: FrameType | None = sys._getframe(2)
    kinds = _CODE_KINDS
    while f is not None:
        code = f.f_code
        hit = kinds.get(id(code))
        kind = hit[1] if hit is not None else _code_kind(code)
        if kind == _YOURS:
            return f
        if direct and kind == _TORCH:
            return None
        f = f.f_back
    return None


_SITES: dict[tuple[int, int], tuple[str, str]] = {}
"""(id(code object), offset of the instruction running) -> what :func:`site_of` gives: keyed by id, as
:data:`_CODE_KINDS` is, and by the instruction rather than the line (a frame's line is found by reading its code's
line table up to the instruction, at each ``f_lineno``)."""
_SITE_CODES: list[Any] = []  # the code objects of _SITES' keys: kept, so that their ids are not reused


def site_of(frame: FrameType) -> tuple[str, str]:
    """``("model.py:14", "H = torch.tanh(X @ W + b)")`` of a frame's current line (cached per instruction)."""
    code = frame.f_code
    key = (id(code), frame.f_lasti)
    hit = _SITES.get(key)
    if hit is None:
        fn = code.co_filename
        hit = (f"{os.path.basename(fn)}:{frame.f_lineno}", linecache.getline(fn, frame.f_lineno).strip())
        if len(_SITES) < 8192:
            _SITES[key] = hit
            _SITE_CODES.append(code)
    return hit


def _no_columns(code: Any) -> Any:
    """``code`` with every instruction on its first line and no column ranges (a traceback through it shows
    the line it reads as, without carets under columns of another line)."""
    units, table = len(code.co_code) // 2, bytearray()
    while units > 0:  # Python 3.11+ location table: entries of kind 13 (a line delta, no columns), 8 units each
        k = min(units, 8)
        table += bytes((0x80 | (13 << 3) | (k - 1), 0))
        units -= k
    return code.replace(co_linetable=bytes(table))


_CALL = (_no_columns((lambda c, i, f, a, k: c[i](c, i - 1, f, a, k) if i >= 0 else f(*a, **k)).__code__)
         if sys.version_info >= (3, 11) else None)
_DEPTH = 4  # the frames copied: the op's caller and 3 above it (torch's nn.Softmax warns with stacklevel 5)
_CHAINS: dict[tuple[int, ...], tuple[Any, ...]] = {}  # (id(code), instruction) of those frames -> their copies
_CHAIN_CODES: list[Any] = []  # the code objects of _CHAINS' keys: kept, so that their ids are not reused
_OURS: dict[int, tuple[Any, bool]] = {}  # id(code) -> (code, whether it is shapeviz's or torch's dispatch)
_OVERRIDES = os.path.join(torch_dir(), "overrides.py")


def _ours(code: Any) -> bool:
    hit = _OURS.get(id(code))
    if hit is None:
        fn = code.co_filename
        hit = _OURS[id(code)] = (code, fn == _OVERRIDES or (is_library(fn) and not is_torch(fn)))
    return hit[1]


def dynamo_skip(code: Any) -> None:
    """Dynamo must never compile a frame of ``code``, nor of what it calls (it runs eagerly): shapeviz's own
    frames that run between the ops of a compiled model (a torch function mode's ``__torch_function__``, the
    copies of :func:`call_as_caller`, which read as your file's). Set through torch's C module, so dynamo is not
    imported for it; a no-op on a torch without it."""
    ef = getattr(getattr(torch._C, "_dynamo", None), "eval_frame", None)
    try:
        skip = ef._FrameAction.SKIP  # type: ignore[union-attr]
        ef.set_code_exec_strategy(code, ef._FrameExecStrategy(skip, skip))  # type: ignore[union-attr]
    except Exception:  # an older torch: nothing to set
        pass


def _copy(frame: FrameType) -> Any:
    """A function whose frame reads, to Python's warnings, as ``frame`` at its current line: its file, line,
    name and module globals (where ``__warningregistry__`` keeps what was shown once)."""
    code = frame.f_code
    made = _CALL.replace(co_filename=code.co_filename, co_firstlineno=frame.f_lineno or code.co_firstlineno,
                         co_name=code.co_name, co_qualname=code.co_qualname)
    dynamo_skip(made)
    return FunctionType(made, frame.f_globals)


def call_as_caller(func: Any, args: tuple, kwargs: dict) -> Any:
    """``func(*args, **kwargs)``, run by a torch function mode's ``__torch_function__``, under copies of the
    frames that called the op (yours, or torch's module code), so that a warning torch raises in it (a C++
    ``TORCH_WARN``, or ``warnings.warn(stacklevel=n)`` in torch's Python) names the line it names without
    shapeviz, and is filtered and shown once per line as it is there (not as ``shapeviz/tracing/flow.py``'s).
    An error's traceback skips the copies."""
    if _CALL is None or len(_OURS) > 8192 or dynamo_compiling():
        return func(*args, **kwargs)
    f: FrameType | None = sys._getframe(2)
    while f is not None and _ours(f.f_code):  # past the mode and torch's dispatch (overrides.py)
        f = f.f_back
    if f is not None and f.f_code is getattr(func, "__code__", None):  # the op's own outer call (F.softmax)
        f = f.f_back
    frames: list[FrameType] = []
    while f is not None and len(frames) < _DEPTH:
        frames.append(f)
        f = f.f_back
    if not frames:
        return func(*args, **kwargs)
    key = tuple(x for fr in frames for x in (id(fr.f_code), fr.f_lasti))
    chain = _CHAINS.get(key)
    if chain is None:
        chain = tuple(_copy(fr) for fr in frames)
        if len(_CHAINS) < 4096:
            _CHAINS[key] = chain
            _CHAIN_CODES.extend(fr.f_code for fr in frames)
    try:
        return chain[-1](chain, len(chain) - 2, func, args, kwargs)
    except BaseException as e:
        tb = e.__traceback__  # this frame's entry: point it past the copies, to what the op itself ran
        if tb is not None:
            nxt = tb.tb_next
            for _ in chain:
                nxt = nxt.tb_next if nxt is not None else None
            tb.tb_next = nxt
        raise


class FrameLabels:
    """Variable names of the tensors a frame can see (its locals, then ``self``'s tensors), read
    only when a record asks for one.

    >>> import sys, torch
    >>> X = torch.zeros(2)
    >>> FrameLabels(sys._getframe(), {}).name_of(X)
    'X'
    """

    __slots__ = ("frame", "locals", "owner", "owners")

    def __init__(self, frame: FrameType, owners: dict[int, tuple[list[str], dict[int, str]]]) -> None:
        self.frame = frame
        self.locals: dict[str, Any] | None = None
        self.owner: Any = None
        self.owners = owners  # id(module) -> its tensor attributes (see _module_attrs), read once per trace

    def name_of(self, t: Any) -> str:
        """The variable ``t`` was read from (``"X"``, ``"self.W_xh"``), or ``""``: the first local that is
        ``t``, else the first of ``self``'s tensor attributes that holds it now."""
        loc = self.locals
        if loc is None:
            loc = self.locals = self.frame.f_locals
            self.owner = loc.get("self")
        for name, v in loc.items():
            if v is t:
                return name
        return self.attr_of(t)

    def attr_of(self, t: Any) -> str:
        """``"self.W_xh"``: the first of ``self``'s tensor attributes that holds ``t`` now, or ``""``."""
        if self.locals is None:
            self.locals = self.frame.f_locals
            self.owner = self.locals.get("self")
        return attr_label(self.owner, t, self.owners)


def attr_label(me: Any, t: Any, owners: dict[int, tuple[list[str], dict[int, str]]]) -> str:
    """``"self.W_xh"``: the first of ``me``'s tensor attributes (``me`` a frame's ``self``) that holds ``t`` now, or
    ``""``; ``owners`` caches a module's attributes for the trace (see :class:`FrameLabels`).

    >>> import torch.nn as nn
    >>> lin = nn.Linear(2, 3)
    >>> attr_label(lin, lin.weight, {}), attr_label(None, lin.weight, {})
    ('self.weight', '')
    """
    if me is None:
        return ""
    if not isinstance(me, nn.Module):
        for name, v in tensor_attrs(me):
            if v is t:
                return f"self.{name}"
        return ""
    known = owners.get(id(me))
    if known is None:
        known = owners[id(me)] = _module_attrs(me)
    plain, held = known
    d = me.__dict__
    for name in plain:  # tensors kept as plain attributes (self.h = ...): what each holds now
        if d.get(name) is t:
            return f"self.{name}"
    name = held.get(id(t))  # a parameter or buffer: by identity, checked to be held still
    if name is not None and name not in d and (me._parameters.get(name) is t or me._buffers.get(name) is t):
        return f"self.{name}"
    # one set during the forward (a buffer updated as self.buf = ..., a parameter replaced): looked for (a
    # parameter is never a plain Tensor; type() rather than isinstance: nn.Parameter's metaclass is slow)
    params = me._parameters.items() if type(t) is not torch.Tensor else ()
    for name, v in (*params, *me._buffers.items()):
        if v is t and name not in d:
            return f"self.{name}"
    return ""


def _module_attrs(me: nn.Module) -> tuple[list[str], dict[int, str]]:
    """A module's tensor attributes, read once per trace: the names of those kept in its ``__dict__``, and
    id -> name of its parameters and buffers (the first name of each)."""
    plain = [name for name, v in me.__dict__.items() if isinstance(v, torch.Tensor)]
    held: dict[int, str] = {}
    for name, v in (*me._parameters.items(), *me._buffers.items()):
        if isinstance(v, torch.Tensor) and name not in plain:
            held.setdefault(id(v), name)
    return plain, held


def tensor_attrs(me: Any) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of an object's tensor attributes, a module's parameters and buffers included."""
    attrs = list(getattr(me, "__dict__", {}).items())
    if isinstance(me, nn.Module):
        attrs += list(me._parameters.items()) + list(me._buffers.items())
    return [(name, v) for name, v in attrs if isinstance(v, torch.Tensor)]


_CALL_IMPL = nn.Module._call_impl.__code__


def first_keyword(module: nn.Module) -> Any:
    """The first keyword argument of ``module``'s call running now (``model(input_ids=x)``: ``x``), read from
    torch's ``_call_impl`` frame a global pre-hook of it is called from; None where there is none."""
    f = sys._getframe(1)
    for _ in range(8):  # the hook's own frames, then torch's _call_impl
        f = f.f_back  # type: ignore[assignment]
        if f is None:
            return None
        if f.f_code is _CALL_IMPL:
            local = f.f_locals
            kwargs = local.get("kwargs") if local.get("self") is module else None
            return next(iter(kwargs.values()), None) if kwargs else None
    return None


def label(t: Any) -> str:
    """The variable of your code that holds ``t`` (``"e"``), else a placeholder that no variable there has
    (``"x"``, or ``"y"`` where your ``x`` is another tensor: a message must not seem to name it)."""
    frame = user_frame()
    local = frame.f_locals if frame is not None else {}
    found = [k for k, v in local.items() if v is t]
    return found[0] if found else next((n for n in ("x", "y", "t", "z", "v") if n not in local), "the_tensor")
