"""Turning checks on: per model (:func:`watch`) or everywhere (:func:`checking`, :func:`enable`).

>>> import torch, torch.nn as nn
>>> model = nn.Sequential(nn.Linear(4, 8), nn.GRU(8, 16))
>>> with watch(model):
...     out, h_n = model[1](torch.randn(5, 2, 8))  # (T=5, bs=2, emb=8) -> h_n (1, 2, 16)
>>> tuple(h_n.shape)
(1, 2, 16)

One mechanism serves both: while anything is watched or checked, the ``forward`` of the six base
classes (``nn.LSTM``, ``nn.GRUCell``, …) checks the call torch actually makes (a subclass's own
``forward(x, lengths)`` that calls ``super().forward(x)`` is checked on ``x``), then runs the
original (a layer's without torch's own ``check_forward_args`` where shapeviz's check verified the call:
:mod:`shapeviz.runtime.patching`). Watched modules are found in a registry keyed by ``id``: no per-module
hook, so a watched model deep-copies and pickles, and a copy is not watched. ``watch(inputs=)`` adds no hook
either: the model's class runs shapeviz's ``_call_impl``, which declares the named sizes around each call of
that model (:mod:`shapeviz.runtime.rootcall`); ``checking(inputs=)`` adds two global module hooks
(module-level objects whose copies are inert). Every patch and hook is removed on exit, on exceptions, and
by :func:`disable`; ``SHAPEVIZ_DISABLE=1`` makes all of these install nothing.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from shapeviz._errors import ShapeError, SpecError
from shapeviz.core.declared import declared_types
from shapeviz.core.dimensions import DECLARED, Declarer, live_declared, parse_names
from shapeviz.core.model import CLASS_NAMES, is_recurrent
from shapeviz.runtime import patching, rootcall
from shapeviz.runtime.fastcheck import check_input, check_traced
from shapeviz.runtime.switches import dynamo_compiling, env_disabled, is_compiling
from shapeviz.tracing.copies import ShapevizHook
from shapeviz.tracing.flow import flow_block
from shapeviz.tracing.flow import start as flow_start

_live_handles: weakref.WeakSet[WatchHandle] = weakref.WeakSet()
_lock = threading.RLock()
_CALL_CODE = nn.Module._call_impl.__code__


def inert_hook(*_: Any, **__: Any) -> None:
    """What a shapeviz hook becomes in a copy (``copy.deepcopy``, ``torch.save``): it does nothing."""


def _inert() -> Callable[..., None]:
    return inert_hook


class _Hook(ShapevizHook):
    """A hook shapeviz installs: a copy of the model leaves it out (:mod:`shapeviz.tracing.copies`); should
    that be displaced, it is a module-level class, so a copied or pickled model gets :func:`inert_hook`."""

    __slots__ = ("namer",)

    def __init__(self, namer: _InputNamer) -> None:
        self.namer = namer

    def __reduce__(self) -> tuple[Callable[[], Callable[..., None]], tuple]:
        return _inert, ()

    def __deepcopy__(self, memo: dict) -> Callable[..., None]:
        return inert_hook


class _Pre(_Hook):
    __slots__ = ()

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any] | None = None) -> None:
        if not is_compiling():  # a global hook fires once more for torch.compile's wrapper: it stands aside
            self.namer.pre(module, args, kwargs)


class _Post(_Hook):
    __slots__ = ()

    def __call__(self, module: nn.Module, *_: Any) -> None:
        if not is_compiling():
            self.namer.post()


def _running(root: weakref.ref, thread: int, skip: int = 0) -> bool:
    """Is a call of ``root`` (besides ``skip`` innermost ones) still on this thread's stack?

    Asked only on rare paths: the slow path, or a root entered while its last call looks unfinished.
    """
    if threading.get_ident() != thread:
        return True
    target = root()
    if target is None:
        return False
    f: types.FrameType | None = sys._getframe(1)
    while f is not None:
        if f.f_code is _CALL_CODE and f.f_locals.get("self") is target:
            if skip == 0:
                return True
            skip -= 1
        f = f.f_back
    return False


class _PerThread:
    """One thread's state in a namer: its stack of module calls, the root, the cached declaration."""

    __slots__ = ("declarer", "live", "root", "stack")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.stack: list[tuple[weakref.ref, object]] = []
        self.declarer = Declarer(names)
        self.root: weakref.ref | None = None
        self.live: Callable[[], bool] | None = None

    def unwind(self) -> None:
        while self.stack:
            key = self.stack.pop()[1]
            if key is not None:
                self.declarer.pop(key)


class _InputNamer:
    """Declares the sizes named by ``checking(inputs="bs T")`` while the outermost forward runs.

    Per context: it acts only where Python's context holds it (the task, thread or code that opened the
    block, never another task awaiting meanwhile), and never names the input of a bare recurrent layer or
    cell (that call's own conventions say what it is). Each declaration carries a ``live`` check, so one
    left behind by a forward stopped with ``sys.exit``/Ctrl-C is never believed.
    """

    def __init__(self, names: tuple[str, ...], owner: int) -> None:
        self.names = names
        self.owner = owner  # the thread of a checking()/enable() block (whose context holds it in _BLOCKS)
        self.local = threading.local()
        self.open = True

    def live(self, root: weakref.ref, thread: int) -> bool:
        """Is a declaration this namer made for ``root``'s call still believable?"""
        return self.open and _running(root, thread)

    def _thread(self) -> _PerThread:
        t = self.local.__dict__.get("t")
        if t is None:
            t = self.local.__dict__["t"] = _PerThread(self.names)
        return t

    def pre(self, module: nn.Module, args: tuple, kwargs: dict[str, Any] | None = None) -> None:
        if self not in _BLOCKS.get():  # another task, thread or generator's context
            return
        t = self.local.__dict__.get("t") or self._thread()
        stack = t.stack
        if stack:  # a nested call of the root, or one left behind by a forward stopped with sys.exit/Ctrl-C
            if stack[0][0]() in (module, None) and not _running(stack[0][0], threading.get_ident(), skip=1):
                t.unwind()  # left behind (no post hook ran)
            if stack:
                stack.append((weakref.ref(module), None))
                return
        first = args[0] if args else next(iter((kwargs or {}).values()), None)
        if (not isinstance(first, Tensor) or first.dim() < len(self.names)  # unbatched, say: nothing named
                or is_recurrent(module)):  # a bare layer: its own conventions say
            stack.append((weakref.ref(module), None))
            return
        root = t.root
        if root is None or root() is not module:
            root = t.root = weakref.ref(module)
            t.live = functools.partial(self.live, root, threading.get_ident())
        if DECLARED.get() is not None:  # sizes declared around the call: they must agree
            rootcall.agree(self.names, first, module)
        stack.append((root, t.declarer.push(first.shape, t.live)))

    def post(self) -> None:
        if self not in _BLOCKS.get():
            return
        t = self.local.__dict__.get("t")
        if t is not None and t.stack:
            key = t.stack.pop()[1]
            if key is not None:
                t.declarer.pop(key)
                if DECLARED.get() is not None:  # drop what a closed namer left in this thread mid-call
                    live_declared()

    def root(self) -> nn.Module | None:
        t = self.local.__dict__.get("t")
        return t.stack[0][0]() if t is not None and t.stack else None

    def close(self) -> None:
        """Undo what :meth:`post` did not: torch skips ``always_call`` hooks when a forward raises a
        BaseException (``sys.exit``, Ctrl-C), which would leave the declared sizes behind. What it declared
        in other threads can only be dropped there: from now on nothing believes it."""
        self.open = False
        t = self.local.__dict__.pop("t", None)
        if t is not None:
            t.unwind()


def _by_provenance(*args: Any) -> None:
    """``ops=True``: a layer call judged by its input's provenance (``diagnosis.provenance_check``, imported
    when the first such call comes: a program that never tracks ops never loads the diagnosis)."""
    from shapeviz.runtime.diagnosis import provenance_check

    provenance_check(*args)


def prune() -> None:
    """Drop, in this thread, declarations no call stands behind any more: left by a forward that a
    BaseException stopped, or by a namer another thread closed (``sv.disable()``) while this one ran."""
    if DECLARED.get() is not None:
        live_declared()


def _uncheckable(mod: nn.Module) -> bool:
    """A scripted or traced module (torch runs it without Python), or one of torch's own recurrent lookalikes
    shapeviz does not know (torch.ao's quantized LSTM): shapeviz cannot check its calls.

    Told by type, never by name: a user's ``class LSTM(nn.Module)`` wrapping an ``nn.LSTM`` is checked
    through its children.

    >>> class LSTM(nn.Module): ...
    >>> _uncheckable(LSTM()), _uncheckable(nn.LSTM(2, 3))
    (False, False)
    """
    if isinstance(mod, torch.jit.ScriptModule):
        return True
    cls = type(mod)
    return (cls.__name__ in CLASS_NAMES and (cls.__module__ == "torch" or cls.__module__.startswith("torch."))
            and not is_recurrent(mod))


class WatchHandle:
    """What :func:`watch` returns: ``.remove()`` stops the checks; also a context manager.

    ``unchecked`` lists the paths of submodules shapeviz cannot check (scripted, traced, quantized).
    """

    def __init__(self, model: nn.Module, inputs: str | None, ops: bool = False) -> None:
        self.model = model
        self.watched: list[tuple[int, weakref.ref]] = []  # (id, its registry weakref) in _watched
        self.root: tuple[int, weakref.ref] | None = None  # the model itself in _watched, if not recurrent
        self.unchecked: list[str] = []
        self.namer: rootcall.RootNamer | None = None
        names = parse_names(inputs, "watch(inputs=...)") if inputs else None
        self.stop_flow: Any = None
        if env_disabled():
            return
        # ops=True: named dims tracked over every op
        self.stop_flow = flow_start(inputs, _by_provenance, model) if ops else None
        try:
            with _lock:
                for path, mod in model.named_modules():
                    if any(path.startswith(u + ".") or not u for u in self.unchecked):
                        continue  # inside a scripted module: reported once, by its root
                    if is_recurrent(mod) and not isinstance(mod, torch.jit.ScriptModule):
                        self.watched.append(_register(mod, path or "<model>"))
                    elif _uncheckable(mod):
                        self.unchecked.append(path)
                if not is_recurrent(model) and "" not in self.unchecked:  # its code's on-the-fly modules
                    self.root = _register(model, "<model>")
                    _ROOT_CODES.update(_method_codes(type(model)))
                if names is not None:
                    self.namer = rootcall.name_root(model, names)
                _sync_patches()
                _live_handles.add(self)
        except BaseException:
            self.remove()
            raise
        if self.unchecked:
            where = ", ".join(p or "<model>" for p in self.unchecked)
            warnings.warn(f"shapeviz cannot check {where} (scripted, traced or quantized): "
                          "those calls run unchecked", UserWarning, stacklevel=3)

    @property
    def active(self) -> bool:
        return bool(self.namer or self.watched)

    def remove(self) -> None:
        """Stop every check this handle started (idempotent); with ``ops=True``, call it in the thread
        that made the handle (a SpecError from another thread, after everything else is stopped)."""
        try:
            self._remove_checks()
        finally:
            stop = getattr(self, "stop_flow", None)
            if stop is not None:
                stop()  # SpecError from another thread: the handle keeps it for its own thread
                self.stop_flow = None

    def _remove_checks(self) -> None:
        with _lock:
            namer, self.namer = self.namer, None
            if namer is not None:
                rootcall.release(namer)
            if self.root is not None:
                self.watched.append(self.root)
                self.root = None
                _ROOT_CODES.subtract(_method_codes(type(self.model)))
                for code in [c for c, n in _ROOT_CODES.items() if n <= 0]:
                    del _ROOT_CODES[code]
            while self.watched:
                mid, ref = self.watched.pop()
                entry = _watched.get(mid)
                if entry is not None and entry[0] is ref:  # not another module that reuses the id
                    entry[2] -= 1
                    if entry[2] <= 0:
                        del _watched[mid]
            _live_handles.discard(self)
            _sync_patches()
        prune()

    def __enter__(self) -> WatchHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return (f"<shapeviz watch on {type(self.model).__name__}: {len(self.watched)} recurrent modules"
                f"{', inputs named' if self.namer else ''}>")


def _register(mod: nn.Module, path: str) -> tuple[int, weakref.ref]:
    """Add one watcher of ``mod`` to the registry (call with _lock); the entry goes when the module dies."""
    mid = id(mod)
    entry = _watched.get(mid)
    if entry is None or entry[0]() is not mod:
        entry = _watched[mid] = [weakref.ref(mod, functools.partial(_forget, mid)), path, 0]
    entry[2] += 1
    return mid, entry[0]


def _forget(mid: int, ref: weakref.ref) -> None:
    with _lock:
        entry = _watched.get(mid)
        if entry is not None and entry[0] is ref:
            del _watched[mid]
            _sync_patches()


def watch(model: nn.Module, inputs: str | None = None, ops: bool = False) -> WatchHandle:
    """Check every call of every recurrent submodule of ``model``.

    ``inputs="bs T"`` names the dims of the model's first input, so a layout mistake further in
    (an ``Embedding`` output fed untransposed to a seq-first RNN) is caught. ``ops=True`` also tracks
    named dims over every op until :meth:`WatchHandle.remove` (``shapeviz.tracing.flow``: a scrambled
    view, logits and targets flattened in different orders); meant for the first steps or a dry run.

    >>> import torch, torch.nn as nn
    >>> rnn = nn.RNN(10, 20, 2)
    >>> h = watch(rnn)
    >>> out, h_n = rnn(torch.randn(5, 3, 10))  # output (T=5, bs=3, D*h=20), h_n (2, 3, 20)
    >>> h.remove()
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"watch() takes an nn.Module, got {type(model).__name__}")
    return WatchHandle(model, inputs, ops)


# ------------------------------------------------------------------------------- the patched forwards
_ORIGINAL_FORWARDS = patching.ORIGINAL_FORWARDS  # the same dicts (tests count what is left patched)
_LEFT = patching.LEFT
_watched: dict[int, list] = {}  # id(module) -> [weakref, path, number of handles]
_state = {"depth": 0, "enabled": False}
_namers: list[tuple[_InputNamer, list[RemovableHandle]]] = []  # checking(inputs=) blocks, any thread
_ROOT_CODES: collections.Counter[types.CodeType] = collections.Counter()  # methods of watched models' classes
_BLOCKS: contextvars.ContextVar[tuple[_InputNamer, ...]] = contextvars.ContextVar("shapeviz_blocks", default=())
"""The checking(inputs=)/enable(inputs=) namers open in this context (a namer acts only where it is listed)."""


def _gate(module: nn.Module, x: Any, hx: Any) -> bool:
    """The check a patched base-class ``forward`` makes of ``module(x, hx)`` before the original runs: a
    watched module (the registry's weakref tells it from another that reuses its id) with its path, any
    other while ``checking()``/``enable()`` is on (its path found only when the check fails). True when
    shapeviz verified the call (:func:`~shapeviz.runtime.fastcheck.check_input`): torch's own check can go."""
    entry = _watched.get(id(module))
    if entry is not None and entry[0]() is module:
        if dynamo_compiling():  # straight to the traced check: no plan read, so no guard on the plans
            return check_traced(module, x, hx, entry[1])
        return check_input(module, x, hx, entry[1])
    if _state["depth"] or _state["enabled"]:
        if dynamo_compiling():
            return check_traced(module, x, hx, None)
        try:
            return check_input(module, x, hx, None)
        except ShapeError as err:
            root = _thread_root()
            path = _path_in(root, module) if root is not None else None
            if path:
                err.add_context(path=path)
            raise
    if _watched:
        where = _made_in_watched()
        if where is not None:
            return check_input(module, x, hx, where)
    return False


def _made_in_watched() -> str | None:
    """Where a recurrent module shapeviz was not told of runs inside a watched model's code (a cell made at
    call time in its ``forward`` or ``generate``), as ``"<model>.generate()"``; None when no watched model's
    code is on this thread's stack. Asked only for such modules, so watched models pay nothing for it, and
    a frame's locals are read only where it runs a method of a watched model's class."""
    if is_compiling():  # dynamo's frames are not Python's: such a module is checked eagerly only
        return None
    f: types.FrameType | None = sys._getframe(2)
    while f is not None:
        code = f.f_code
        if code in _ROOT_CODES:
            obj = f.f_locals.get(code.co_varnames[0])  # the method's self, whatever its name
            entry = _watched.get(id(obj))
            if entry is not None and entry[0]() is obj:
                return f"{entry[1]}.{code.co_name}()"
        f = f.f_back
    return None


def _method_codes(cls: type) -> list[types.CodeType]:
    """The code of every method a class defines or inherits below ``nn.Module`` (``forward``, ``generate`` …)."""
    codes = []
    for klass in cls.__mro__:
        if klass is nn.Module or klass is object:
            break
        for value in vars(klass).values():
            fn = getattr(value, "__func__", value)  # staticmethod/classmethod wrappers too
            code = getattr(fn, "__code__", None)
            if isinstance(code, types.CodeType) and code.co_argcount:
                codes.append(code)
    return codes


def _thread_root() -> nn.Module | None:
    for namer in reversed(_BLOCKS.get()):
        root = namer.root()
        if root is not None:
            return root
    return None


def _path_in(root: nn.Module, target: nn.Module) -> str | None:
    for path, mod in root.named_modules():
        if mod is target:
            return path or "<model>"
    return None


def _sync_patches() -> None:
    """Patch the base classes while anything is checked; restore them as soon as nothing is (call with _lock)."""
    wanted = bool(_watched or _state["depth"] or _state["enabled"])
    patching.sync(wanted, _gate)
    if declared_types() or "shapeviz.runtime.declared" in sys.modules:  # sv.recurrent classes (runtime/declared.py)
        from shapeviz.runtime import declared

        declared.sync(wanted, declared.gate)


def _begin(inputs: str | None) -> tuple[_InputNamer, list[RemovableHandle]] | None:
    names = parse_names(inputs, "checking(inputs=...)") if inputs is not None else None
    with _lock:
        _state["depth"] += 1
        _sync_patches()
        if names is None:
            return None
        namer = _InputNamer(names, owner=threading.get_ident())
        handles = [nn.modules.module.register_module_forward_pre_hook(_Pre(namer)),
                   nn.modules.module.register_module_forward_hook(_Post(namer), always_call=True)]
        entry = (namer, handles)
        _namers.append(entry)
        _BLOCKS.set((*_BLOCKS.get(), namer))  # seen where Python's context says: this task, thread, block
        return entry


def _end(entry: tuple[_InputNamer, list[RemovableHandle]] | None) -> None:
    with _lock:
        if entry is not None:
            for h in entry[1]:
                h.remove()
            entry[0].close()
            if entry in _namers:
                _namers.remove(entry)
            _BLOCKS.set(tuple(n for n in _BLOCKS.get() if n is not entry[0]))
        _state["depth"] = max(0, _state["depth"] - 1)
        _sync_patches()
    prune()


@contextmanager
def checking(inputs: str | None = None, ops: bool = False) -> Iterator[None]:
    """Check every call of every recurrent module, in any model, inside the block.

    ``inputs="bs T"`` declares the sizes of the first model called in this thread inside the block.

    >>> import torch, torch.nn as nn
    >>> cell = nn.GRUCell(8, 16)
    >>> with checking():
    ...     h = cell(torch.randn(4, 8))  # (bs=4, emb=8) -> (bs=4, h=16)
    >>> tuple(h.shape)
    (4, 16)
    """
    if env_disabled():
        yield
        return
    entry = _begin(inputs)
    try:
        with flow_block(inputs, ops, _by_provenance):
            yield
    finally:
        _end(entry)


def enable(inputs: str | None = None) -> None:
    """Turn on checking of every recurrent module call until :func:`disable`.

    >>> enable(); enabled()
    True
    >>> disable(); enabled()
    False
    """
    if env_disabled():
        return
    with _lock:
        if _state["enabled"]:
            return
        _state["enabled"] = True
        _state["enable_entry"] = _begin(inputs)  # type: ignore[assignment]


def disable() -> None:
    """Turn every shapeviz check off: global checking, open ``checking()`` blocks and all watches."""
    with _lock:
        _state["enabled"] = False
        _state["depth"] = 0
        _state.pop("enable_entry", None)
        for namer, handles in _namers:
            for h in handles:
                h.remove()
            namer.close()
        _namers.clear()
        _BLOCKS.set(())
        for handle in list(_live_handles):
            with contextlib.suppress(SpecError):  # ops=True from another thread: its own thread stops it
                handle.remove()
        rootcall.release_all()  # of handles dropped without remove()
        _watched.clear()
        _ROOT_CODES.clear()
        _sync_patches()
    prune()


def enabled() -> bool:
    """True while global checking is on (``enable()`` or inside ``checking()``)."""
    return bool(_state["depth"] or _state["enabled"])
