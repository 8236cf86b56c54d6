"""The notebook extension: ``%load_ext shapeviz`` checks every recurrent call, errors render as HTML.

>>> ext = Extension(ip=None)  # what %load_ext builds (with the running IPython shell)
>>> ext.magic("status")
'shapeviz: checking off'

In a notebook::

    %load_ext shapeviz            # sv.enable(): every nn.RNN/LSTM/GRU/*Cell call is checked
    %shapeviz inputs bs T         # the model input's dims are (bs, T): layout mistakes are caught
    %shapeviz status              # shapeviz: checking on, inputs (bs T)
    %shapeviz off                 # sv.disable(): every check off (watches too)
    %shapeviz on

Only ``%shapeviz status`` (or a bare ``%shapeviz``) prints: ``on``, ``off`` and ``inputs`` change
the state quietly, as ``%load_ext`` does, so a cell that declares and then asks shows one line.

A :class:`~shapeviz.ShapeError` raised by a cell is shown as HTML (expected and actual shapes side
by side, the disagreeing dims highlighted, the hints as code; see :mod:`shapeviz.render.html`),
followed by a one-line traceback that says which line of the cell raised it (the cell still fails,
so "run all" stops there). A ShapeError shown as
a value (``run.error``) renders the same way; a :class:`~shapeviz.tracing.records.Trace` shows its table.
``%unload_ext`` turns checking off and removes the magic, the handler and the formatters.

IPython is imported only by the code that needs a shell (``pip install shapeviz[notebook]``).
"""

from __future__ import annotations

import html
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from shapeviz._errors import ShapeError, SpecError
from shapeviz.core.dimensions import parse_names
from shapeviz.core.frames import is_library
from shapeviz.render.html import shape_error_html
from shapeviz.runtime.watching import checking, disable, enable, enabled

__all__ = ["Extension", "load", "load_ipython_extension", "unload", "unload_ipython_extension"]

_USAGE = "usage: %shapeviz on | off | status | inputs NAME [NAME ...]   (e.g. %shapeviz inputs bs T)"


def _trace_html(t: Any) -> str:
    return f"<pre>{html.escape(t.table())}</pre>"


def _error_html(err: ShapeError) -> str:
    return shape_error_html(err, getattr(err, "__notes__", ()))


class Extension:
    """The state of the extension in one shell: checking on/off, the declared input names, hooks.

    >>> ext = Extension(ip=None)
    >>> ext.magic("inputs bs T")      # quiet: nothing to print
    >>> ext.magic("status")
    'shapeviz: checking on, inputs (bs T)'
    >>> ext.magic("off"); ext.magic("")
    'shapeviz: checking off'
    """

    def __init__(self, ip: Any) -> None:
        self.ip = ip
        self.inputs: str | None = None
        self._inputs_cm: AbstractContextManager[None] | None = None
        self._prev_exc: tuple[tuple[type[BaseException], ...], Callable[..., Any]] | None = None

    # ------------------------------------------------------------ checking
    def _close_inputs(self) -> None:
        cm, self._inputs_cm = self._inputs_cm, None
        if cm is not None:
            cm.__exit__(None, None, None)

    def on(self) -> None:
        """``sv.enable()``, and the declared input names again if there are some."""
        enable()
        if self.inputs is not None and self._inputs_cm is None:
            cm = checking(inputs=self.inputs)
            cm.__enter__()
            self._inputs_cm = cm

    def off(self) -> None:
        """``sv.disable()``: global checking, ``checking()`` blocks and watches all off."""
        self._close_inputs()
        disable()

    def declare(self, names: str) -> None:
        """Name the model input's dims (``"bs T"``) for every forward from now on, and check."""
        spec = " ".join(parse_names(names, "%shapeviz inputs"))
        self._close_inputs()
        self.inputs = spec
        self.on()

    def status(self) -> str:
        if not enabled():
            return "shapeviz: checking off"
        if self.inputs is not None and self._inputs_cm is not None:
            return f"shapeviz: checking on, inputs ({self.inputs})"
        return "shapeviz: checking on (no input names: %shapeviz inputs bs T declares them)"

    def magic(self, line: str) -> str | None:
        """Run ``%shapeviz LINE``; returns the line it prints: the status for ``status``, else None.

        >>> Extension(ip=None).magic("sideways")
        Traceback (most recent call last):
        ...
        shapeviz.SpecError: %shapeviz 'sideways': usage: %shapeviz on | off | status | inputs NAME ...
        """
        words = line.split()
        cmd = words[0] if words else "status"
        if cmd == "on" and len(words) == 1:
            self.on()
        elif cmd == "off" and len(words) == 1:
            self.off()
        elif cmd == "inputs" and len(words) > 1:
            self.declare(" ".join(words[1:]))
        elif cmd == "status" and len(words) <= 1:
            return self.status()
        else:
            raise SpecError(f"%shapeviz {line.strip()!r}: {_USAGE}")
        return None

    # ------------------------------------------------------------ the shell
    def _line_magic(self, line: str) -> None:
        from IPython.core.error import UsageError

        try:
            shown = self.magic(line)
        except SpecError as e:
            raise UsageError(str(e)) from None
        if shown is not None:
            print(shown)

    def _handler(self, shell: Any, etype: type[BaseException], value: BaseException, tb: TracebackType | None,
                 tb_offset: int | None = None) -> list[str] | None:
        """IPython's custom-exception handler: HTML for a ShapeError, the previous handler otherwise."""
        if not isinstance(value, ShapeError):
            if self._prev_exc is not None:
                return self._prev_exc[1](etype, value, tb, tb_offset)
            return shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
        from IPython.display import display

        display({"text/html": _error_html(value), "text/plain": str(value)}, raw=True)
        stb = [f"ShapeError [{value.code}]{_where(tb)}: {value.module}, argument `{value.argument}` "
               "(explained above)"]
        # IPython ignores what a custom handler returns; _showtraceback (ipykernel's and the
        # terminal's) sends it as the cell's error output and execute reply
        shell._showtraceback(etype, value, stb)
        return stb

    def load(self) -> None:
        """Turn checking on and hook the magic, the exception handler and the formatters into the shell."""
        ip = self.ip
        self.on()
        if ip is None:
            return
        ip.register_magic_function(self._line_magic, magic_kind="line", magic_name="shapeviz")
        if ip.custom_exceptions:
            self._prev_exc = (tuple(ip.custom_exceptions), ip.CustomTB)
        prev = tuple(ip.custom_exceptions)
        ip.set_custom_exc(prev + (ShapeError,), self._handler)
        fmt = ip.display_formatter.formatters["text/html"]
        fmt.for_type(ShapeError, _error_html)
        fmt.for_type_by_name("shapeviz.tracing.records", "Trace", _trace_html)

    def unload(self) -> None:
        """Undo :meth:`load`: checking off; magic, handler and formatters removed."""
        self.off()
        ip = self.ip
        if ip is None:
            return
        ip.magics_manager.magics["line"].pop("shapeviz", None)
        if self._prev_exc is not None:
            exc, handler = self._prev_exc
            ip.custom_exceptions = exc
            ip.CustomTB = handler
        else:
            ip.set_custom_exc((), None)
        fmt = ip.display_formatter.formatters["text/html"]
        fmt.pop(ShapeError, None)
        fmt.pop("shapeviz.tracing.records.Trace", None)


def _where(tb: TracebackType | None) -> str:
    """`` in line 3: `out = model(x)` `` -- the innermost frame outside torch and shapeviz."""
    best = None
    for fs in traceback.extract_tb(tb):
        if not is_library(fs.filename):
            best = fs
    if best is None:
        return ""
    code = f": `{best.line.strip()}`" if best.line else ""
    return f" in line {best.lineno}{code}"


_extensions: dict[int, Extension] = {}


def load(ip: Any) -> Extension:
    """Load the extension into the IPython shell ``ip`` (what ``%load_ext shapeviz`` runs).

    >>> ext = load(None)  # no shell: only checking is turned on
    >>> ext.status()
    'shapeviz: checking on (no input names: %shapeviz inputs bs T declares them)'
    >>> unload(None)
    """
    old = _extensions.pop(id(ip), None)
    if old is not None:
        old.unload()
    ext = Extension(ip)
    ext.load()
    _extensions[id(ip)] = ext
    return ext


def unload(ip: Any) -> None:
    """Unload the extension from ``ip`` (what ``%unload_ext shapeviz`` runs); checking off."""
    ext = _extensions.pop(id(ip), None)
    if ext is not None:
        ext.unload()
    else:
        disable()


def load_ipython_extension(ip: Any) -> None:
    """IPython's entry point: ``%load_ext shapeviz.apps.ipython`` (and ``%load_ext shapeviz``)."""
    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    """IPython's entry point for ``%unload_ext``."""
    unload(ip)
