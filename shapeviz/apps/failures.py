"""How the command line fails: its exit codes, and every failure turned into one of them with one line.

>>> import io, contextlib
>>> err = io.StringIO()
>>> with contextlib.redirect_stderr(err):
...     code = exit_code(UsageError("--input: sizes must be at least 1"))
>>> code, err.getvalue()
(2, 'shapeviz: --input: sizes must be at least 1\\n')

:func:`exit_code` is the one mapping from an exception to an exit code; :func:`user_code` wraps
the user's own code (exceptions and ``sys.exit`` become exit code 3); :func:`sigterm_unwinds` makes
SIGTERM unwind the stack, so a running renderer is killed by its ``finally``.

The terminal and pipes: :func:`encodable_output` makes text that stdout or stderr cannot encode
degrade (``→`` becomes ``->``, other characters ``?``) instead of failing, and :func:`reader_gone`
tells a closed pipe (``shapeviz explain ... | head -1``) from a write that really failed: the command
then stops quietly with :data:`EXIT_BROKEN_PIPE`, as Unix tools do.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from shapeviz._errors import MissingBackendError, ShapeError, SpecError
from shapeviz.core.frames import is_library

EXIT_OK = 0
EXIT_SHAPE = 1
EXIT_USAGE = 2
EXIT_USER_CODE = 3
EXIT_BACKEND = 4
EXIT_INTERNAL = 5
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it (128 + SIGINT); SIGTERM gives 128 + 15 = 143
EXIT_BROKEN_PIPE = 141
"""The reader of stdout went away (``| head -1``): stopped quietly with what a shell reports for a
process that SIGPIPE killed (128 + 13), as ``yes | head -1`` does, so ``set -o pipefail`` sees it."""

ASCII_FALLBACK: dict[str, str] = {
    "→": "->", "←": "<-", "↔": "<->", "×": "x", "…": "...", "—": "--", "–": "-", "−": "-", "·": ".",
    "✗": "x", "✓": "ok", "⚠": "!", "≤": "<=", "≥": ">=", "≠": "!=", "µ": "u", "²": "^2",
    "┌": "+", "└": "+", "│": "|", "─": "-",
}
"""What shapeviz's own non-ASCII characters become on a stream that cannot encode them."""

DEGRADE = "shapeviz.degrade"
"""The codec error handler :func:`encodable_output` puts on stdout and stderr."""

_DEGRADABLE = frozenset({"strict", "backslashreplace", "surrogateescape"})


class UsageError(Exception):
    """A mistake in how the command was called: exit code 2."""


class UserCodeError(Exception):
    """The user's file, factory or forward pass raised or called ``sys.exit``: exit code 3."""


class Terminated(SystemExit):
    """SIGTERM arrived: unwinds the stack so every ``finally`` (the renderer's kill) runs."""


def exit_code(exc: BaseException) -> int:
    """Print the one-line reason for ``exc`` on stderr and return its exit code.

    Anything unexpected is a bug of shapeviz (5), reported with where it happened, not a traceback.
    A ``SystemExit`` that is not SIGTERM's is raised again. A closed stdout pipe says nothing.
    """

    def say(text: str) -> None:
        with contextlib.suppress(BrokenPipeError):  # `2>&1 | head`: nowhere left to say it
            print(f"shapeviz: {text}", file=sys.stderr)

    if isinstance(exc, ShapeError):
        say(f"shape error\n{exc}")
        return EXIT_SHAPE
    if isinstance(exc, (SpecError, UsageError)):
        say(str(exc))
        return EXIT_USAGE
    from shapeviz.render.backend import RenderError  # here, not at import: `shapeviz --help` never renders

    if isinstance(exc, (MissingBackendError, RenderError)):
        say(str(exc))
        return EXIT_BACKEND
    if isinstance(exc, UserCodeError):
        say(str(exc))
        return EXIT_USER_CODE
    if isinstance(exc, BrokenPipeError) and reader_gone():  # `| head`: stop as quietly as Unix tools
        silence_stdout()
        return EXIT_BROKEN_PIPE
    if isinstance(exc, OSError):  # an output file or folder that cannot be written
        say(f"cannot write: {exc}")
        return EXIT_USAGE
    if isinstance(exc, KeyboardInterrupt):
        say("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, Terminated):
        say("terminated (SIGTERM)")
        return int(exc.code or 1)
    if not isinstance(exc, Exception):
        raise exc
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    say(f"internal error: {type(exc).__name__}: {exc}{where}; please report it with the command line")
    return EXIT_INTERNAL


def writable_output(path: str, valid: Sequence[str], what: str) -> Path:
    """``path`` as a Path, after checking its suffix and that it can be written (before any work).

    >>> writable_output("/tmp/x.pdf", (".svg",), "draw -o")
    Traceback (most recent call last):
    ...
    shapeviz.apps.failures.UsageError: draw -o: cannot write '/tmp/x.pdf'; the file name must end in one of .svg
    """
    p = Path(path)
    if p.suffix.lower() not in valid:
        raise UsageError(f"{what}: cannot write {path!r}; the file name must end in one of {', '.join(valid)}")
    try:
        if p.is_dir():
            raise UsageError(f"{what}: {path!r} is a folder; give a file name, e.g. {str(p / ('out' + valid[0]))!r}")
        existed = p.exists()
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "ab"):
            pass
        if not existed:
            p.unlink()
    except OSError as exc:
        raise UsageError(f"{what}: cannot write {shorten(path)!r}: {exc.strerror or exc}") from None
    return p


def shorten(text: str, limit: int = 80) -> str:
    """``text``, its middle cut when it is longer than ``limit``.

    >>> shorten("a" * 100, 30)
    'aaaaaaaaaa...aaaaaaaaaaaaaaaaa'
    """
    return text if len(text) <= limit else f"{text[:limit - 20]}...{text[-17:]}"


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes, or None where the OS does not say.

    >>> m = memory_bytes(); m is None or m > 0
    True
    """
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def describe_user_exception(what: str, exc: BaseException) -> str:
    """``"calling build() raised ValueError: ..."`` with the user's own frames only."""
    import traceback

    tb = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in tb if not is_library(f.filename)][-3:]
    where = "".join(traceback.format_list(frames)).rstrip()
    lines = [f"{what} raised {type(exc).__name__}: {exc}"]
    if where:
        lines += ["where (most recent call last):", where]
    notes = getattr(exc, "__notes__", None) or []
    return "\n".join(lines + list(notes))


@contextlib.contextmanager
def user_code(what: str, passthrough: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Run the user's code: its exceptions and ``sys.exit`` calls become :class:`UserCodeError`.

    ``passthrough`` (a ShapeError from a check) and SIGTERM go on unchanged.

    >>> try:
    ...     with user_code("calling build()"):
    ...         raise SystemExit(0)
    ... except UserCodeError as exc:
    ...     print(str(exc)[:55])
    calling build() called sys.exit(0): shapeviz stopped th
    """
    try:
        yield
    except (Terminated, *passthrough):
        raise
    except BrokenPipeError as exc:
        if reader_gone():  # the user's print into `| head`: the pipe's end, not the user's mistake
            raise
        raise UserCodeError(describe_user_exception(what, exc)) from None
    except SystemExit as exc:
        raise UserCodeError(f"{what} called sys.exit({exc.code!r}): shapeviz stopped there and checked "
                            "nothing; keep a script's own run under `if __name__ == \"__main__\":`") from None
    except Exception as exc:
        raise UserCodeError(describe_user_exception(what, exc)) from None


def _on_sigterm(signum: int, frame: Any) -> NoReturn:
    raise Terminated(128 + signum)


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` (a SystemExit) so ``finally`` blocks run: a dot child is killed.

    The previous handler comes back at the end; off the main thread (where Python cannot set
    handlers) nothing changes.

    >>> before = signal.getsignal(signal.SIGTERM)
    >>> with sigterm_unwinds():
    ...     signal.getsignal(signal.SIGTERM) is _on_sigterm
    True
    >>> signal.getsignal(signal.SIGTERM) is before
    True
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


# ====================================================================== the terminal and pipes
def _degrade(err: UnicodeError) -> tuple[str | bytes, int]:
    """Codec error handler: the first character a stream cannot encode, as ASCII.

    >>> "LSTM: (T, bs) → (bs, h) ✓ 東".encode("cp1252", errors=DEGRADE)
    b'LSTM: (T, bs) -> (bs, h) ok ?'

    A byte that ``surrogateescape`` decoded comes back as that byte; anything else becomes ``?``.
    """
    if not isinstance(err, UnicodeEncodeError):
        raise err
    char = err.object[err.start]
    if "\udc80" <= char <= "\udcff":
        return bytes([ord(char) - 0xDC00]), err.start + 1
    return ASCII_FALLBACK.get(char, "?"), err.start + 1


codecs.register_error(DEGRADE, _degrade)


@contextlib.contextmanager
def encodable_output() -> Iterator[None]:
    """Inside, stdout and stderr degrade what their encoding cannot hold instead of raising.

    >>> out = io.TextIOWrapper(io.BytesIO(), encoding="cp1252")
    >>> with contextlib.redirect_stdout(out), encodable_output():
    ...     print("input (T, bs) → output (東)", end="")
    >>> out.flush(); out.buffer.getvalue()
    b'input (T, bs) -> output (?)'

    A Windows console or a redirect with ``PYTHONIOENCODING=cp1252`` then shows ``->`` for ``→``
    and ``?`` for the rest. Only streams that would fail (errors ``strict``) or escape
    (``backslashreplace``, ``surrogateescape``) are changed, and they are put back at the end.
    """
    changed: list[tuple[io.TextIOWrapper, str]] = []
    for stream in {id(s): s for s in (sys.stdout, sys.stderr)}.values():
        before = getattr(stream, "errors", None)
        if isinstance(stream, io.TextIOWrapper) and before in _DEGRADABLE:
            try:
                stream.reconfigure(errors=DEGRADE)
            except (OSError, ValueError):  # a closed stream or pipe: leave it as it is
                continue
            changed.append((stream, before))
    try:
        yield
    finally:
        for stream, before in changed:
            with contextlib.suppress(OSError, ValueError):
                stream.reconfigure(errors=before)


def reader_gone() -> bool:
    """True when stdout is a pipe whose reader has gone (``| head -1`` read its line and exited).

    >>> reader_gone()   # a terminal, a file or a live pipe
    False

    Where the OS cannot say (no ``poll``), a broken pipe is taken to be stdout's.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    try:
        import select

        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - no poll (Windows)
        return True


def silence_stdout() -> None:
    """Point stdout's file descriptor at the null device (its reader is gone).

    What is still buffered, and Python's own flush at exit, then go nowhere instead of raising
    again ("Exception ignored ... BrokenPipeError"). Python's documentation does the same.
    """
    with contextlib.suppress(AttributeError, OSError, ValueError):
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
