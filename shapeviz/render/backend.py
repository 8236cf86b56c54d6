"""Find a Graphviz layout program and render DOT text with it.

>>> d = Diagram('digraph { x -> h }', name="tiny")
>>> d.source.splitlines()[0]
'digraph { x -> h }'
>>> d.render("/tmp/tiny.svg")  # doctest: +SKIP
PosixPath('/tmp/tiny.svg')

Lookup order (first found wins):

1. ``$SHAPEVIZ_DOT``: an explicit program path or name, for people who want a particular one;
2. the system ``dot`` on ``PATH`` (Graphviz: ``apt-get install graphviz``, ``brew install graphviz``);
3. ``graphviz-pure`` on ``PATH`` or next to the running Python (``pip install graphviz-pure``, a core
   dependency of shapeviz): a self-contained Rust port of ``dot`` that writes svg and png itself.

If none is found, rendering raises :class:`~shapeviz._errors.MissingBackendError`; ``Diagram.source``
(the DOT text) never needs a program.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shapeviz._errors import MissingBackendError, ShapevizError, SpecError
from shapeviz.render.files import write_atomic
from shapeviz.render.textsafe import visible

if TYPE_CHECKING:
    import graphviz

FORMATS: tuple[str, ...] = ("svg", "png")
"""Output formats :meth:`Diagram.render` writes (both backends produce them natively)."""

FONT = "Arial"
"""The font diagrams ask for. Both backends lay text out with Arial's metrics (graphviz-pure has them
built in; system ``dot`` finds Arial, or its metric twins Liberation Sans / Arimo, through fontconfig), so
they give the same layout, and graphviz-pure draws its PNGs in a sans face. A stack of names in
``fontname`` is not an option: graphviz-pure then falls back to Times metrics."""

SVG_FONT_FAMILY = "Arial,Liberation Sans,Arimo,Helvetica,sans-serif"
"""What rendered SVGs ask the browser for instead of plain ``Arial``: the same metrics on Windows and
macOS (Arial, Helvetica) and on Linux (Liberation Sans, Arimo), so labels fit the boxes dot measured."""

ENV_VAR = "SHAPEVIZ_DOT"
INSTALL_HINT = (
    "install one of: Graphviz's dot (`apt-get install graphviz` or `brew install graphviz`), "
    "or the self-contained port (`pip install graphviz-pure`); or point $SHAPEVIZ_DOT at a dot program"
)


class RenderError(ShapevizError):
    """The layout program failed or ran past its time limit (the CLI exits 4).

    >>> issubclass(RenderError, ShapevizError)
    True
    """


@dataclass(frozen=True)
class Backend:
    """A layout program shapeviz can run.

    >>> Backend("/usr/bin/dot", "dot").kind
    'dot'
    """

    path: str
    kind: str  # "dot", "graphviz-pure" or "env" ($SHAPEVIZ_DOT)


def _python_bin_dir() -> Path:
    return Path(sys.executable).parent


def find_backend() -> Backend | None:
    """The layout program rendering would use now, or None when there is none.

    >>> b = find_backend()
    >>> b is None or b.kind in ("env", "dot", "graphviz-pure")
    True
    """
    explicit = os.environ.get(ENV_VAR, "").strip()
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            raise MissingBackendError(f"${ENV_VAR}={explicit!r} is not an executable program; "
                                      f"unset it or {INSTALL_HINT}")
        return Backend(found, "env")
    found = shutil.which("dot")
    if found:
        return Backend(found, "dot")
    return find_graphviz_pure()


def find_graphviz_pure() -> Backend | None:
    """graphviz-pure (a core dependency), on PATH or next to the running Python; None if absent.

    >>> b = find_graphviz_pure()
    >>> b is None or b.kind == "graphviz-pure"
    True
    """
    found = shutil.which("graphviz-pure")
    if found is None:
        # pip may install the script next to the interpreter without that folder being on PATH
        found = shutil.which("graphviz-pure", path=str(_python_bin_dir()))
    if found is None:
        found = _installed_script("graphviz-pure")
    return Backend(found, "graphviz-pure") if found else None


def _installed_script(dist: str) -> str | None:
    """The program named like the distribution ``dist`` that it installed, wherever pip put it (``--user`` and
    ``--target`` installs write scripts to folders that are often not on PATH); None when there is none.

    >>> _installed_script("no-such-distribution") is None
    True
    """
    from importlib import metadata

    try:
        found = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return None
    names = (dist, dist + ".exe")
    recorded = [f.locate() for f in found.files or [] if f.name in names]
    # `--target` records the script against pip's temporary folder: it lies in bin/ beside the packages
    beside = [found.locate_file(f"{folder}/{name}") for folder in ("bin", "Scripts") for name in names]
    for path in [*recorded, *beside]:
        if shutil.which(str(path)):  # exists and is executable
            return os.path.normpath(path)
    return None


def require_backend() -> Backend:
    """Like :func:`find_backend`, but raise :class:`MissingBackendError` (saying how to install one)."""
    backend = find_backend()
    if backend is None:
        raise MissingBackendError("shapeviz found no Graphviz layout program to render diagrams with "
                                  "(looked for `dot` and `graphviz-pure` on PATH, then for graphviz-pure next to "
                                  f"Python and where pip recorded it); {INSTALL_HINT}. "
                                  "Diagram.source (the DOT text) works without one.")
    return backend


def check_format(fmt: str) -> str:
    """Normalise an output format name, or raise :class:`SpecError` listing the valid ones."""
    f = fmt.lower().lstrip(".")
    if f not in FORMATS:
        raise SpecError(f"cannot render format {f!r}; valid formats: {', '.join(FORMATS)}")
    return f


def run_dot(source: str, fmt: str, backend: Backend | None = None, timeout: float = 120.0) -> bytes:
    """Lay out and render DOT ``source`` to ``fmt`` (``"svg"`` or ``"png"``) bytes.

    >>> run_dot('digraph { a -> b }', "svg")[:5]  # doctest: +SKIP
    b'<?xml'

    The program runs in its own process group with a time limit (``timeout`` seconds), and it
    never outlives this call: on a timeout, an error, ``KeyboardInterrupt`` or ``SystemExit`` its
    whole group is killed and reaped before the exception goes on. A failure or a timeout raises
    :class:`RenderError`.
    """
    fmt = check_format(fmt)
    backend = backend or require_backend()
    try:
        proc = subprocess.Popen([backend.path, f"-T{fmt}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:  # vanished or not executable between lookup and run
        raise MissingBackendError(f"could not run {backend.path}: {e}; {INSTALL_HINT}") from e
    try:
        out, err_bytes = proc.communicate(source.encode("utf-8"), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RenderError(f"{backend.path} -T{fmt} took longer than {timeout:g} s and was stopped; "
                          "draw fewer steps or layers (max_steps=)") from None
    finally:
        kill_group(proc)
    if proc.returncode != 0 or not out:
        err = err_bytes.decode("utf-8", "replace").strip()
        raise RenderError(f"{backend.path} -T{fmt} failed (exit {proc.returncode}): {err}")
    check_output(out, fmt, f"{backend.path} -T{fmt}")
    if fmt == "svg":
        return out.replace(f'font-family="{FONT}"'.encode(), f'font-family="{SVG_FONT_FAMILY}"'.encode())
    return out


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_output(data: bytes, fmt: str, program: str = "the layout program") -> None:
    """Raise :class:`RenderError` unless ``data`` is a whole image of ``fmt``: an SVG document (``<svg`` …
    ``</svg>``) or a PNG (its signature, then chunks up to ``IEND``).

    >>> check_output(b'<?xml version="1.0"?><svg></svg>', "svg")
    >>> check_output(b"Segmentation fault", "svg", "dot -Tsvg")
    Traceback (most recent call last):
    ...
    shapeviz.render.backend.RenderError: dot -Tsvg exited 0 but did not write an SVG document: it wrote 18 bytes \
starting 'Segmentation fault'

    A program that prints something else and exits 0 (a wrapper script, a broken build) is caught
    here, before anything is written or shown."""
    if fmt == "svg":
        body = data.strip()
        head = body[:4096].lower()
        ok = b"<svg" in head and body.endswith(b"</svg>") and b"\x00" not in head
        what = "an SVG document"
    else:
        ok = data.startswith(_PNG_SIGNATURE) and b"IEND" in data[-16:]
        what = "a PNG image"
    if not ok:
        start = data[:40].decode("utf-8", "replace")
        raise RenderError(f"{program} exited 0 but did not write {what}: it wrote {len(data):,} bytes "
                          f"starting {visible(start)!r}")


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc``'s process group (it was started with ``start_new_session=True``) and reap it.

    >>> p = subprocess.Popen(["sleep", "30"], start_new_session=True)
    >>> kill_group(p); p.poll() is not None
    True
    """
    if proc.poll() is None:
        if hasattr(os, "killpg"):
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            proc.kill()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    proc.wait()


class Diagram:
    """A diagram: ``.source`` (DOT text) always works; ``.render(path)`` needs a dot program.

    >>> d = Diagram('digraph { "x (T=5, bs=3, emb=10)" -> "h (bs=3, h=20)" }')
    >>> "bs=3" in d.source, d.graph is None
    (True, True)

    A diagram shapeviz draws (:func:`~shapeviz.render.unrolled.unroll`) is built as a ``graphviz.Digraph``,
    kept as ``.graph``: restyle it with graphviz's own API, and ``.source``, ``.render()`` and the notebook
    display draw what it holds then. A ``Diagram`` made from DOT text has no ``.graph`` (None).

    >>> import graphviz
    >>> d = Diagram(graphviz.Digraph("tiny"))
    >>> d.graph.edge("x", "h")
    >>> d.graph.graph_attr["bgcolor"] = "white"
    >>> d.source.split("\\n")[:3]
    ['digraph tiny {', '\\tgraph [bgcolor=white]', '\\tx -> h']

    Characters no layout program can read (control characters, lone surrogates: a module may be named
    anything) are shown as visible stand-ins in ``source`` (:func:`~shapeviz.render.textsafe.visible`).
    """

    display_timeout: float = 5.0
    """Seconds a notebook waits for the SVG before it shows the DOT text instead (with a note)."""

    def __init__(self, source: str | graphviz.Digraph, name: str = "diagram") -> None:
        self.graph: graphviz.Digraph | None = None if isinstance(source, str) else source
        self._text = source if isinstance(source, str) else ""
        self.name = name

    @property
    def source(self) -> str:
        """The DOT text: ``.graph``'s source as it is now (or the text the diagram was made from)."""
        return visible(self._text if self.graph is None else self.graph.source, keep="\t\n\r")

    def pipe(self, fmt: str = "svg") -> bytes:
        """The rendered image as bytes (``"svg"`` or ``"png"``)."""
        return run_dot(self.source, fmt)

    def render(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write the diagram to ``path``; the format comes from its suffix (``.svg``, ``.png``).

        >>> Diagram('digraph { a }').render("out.pdf")
        Traceback (most recent call last):
        ...
        shapeviz.SpecError: cannot render format 'pdf'; valid formats: svg, png

        The image is checked before it is written, and written all or nothing (a temporary file renamed
        into place): a failed render or a full disk leaves an existing file as it was.
        """
        p = Path(path)
        fmt = format or p.suffix
        if not fmt:
            raise SpecError(f"cannot tell the format of {str(p)!r} (no suffix); "
                            f"valid formats: {', '.join(FORMATS)}")
        data = self.pipe(check_format(fmt))
        return write_atomic(p, data)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """Jupyter: an SVG image when a dot program draws it within :attr:`display_timeout` seconds, else
        the DOT text with a note that says why (a missing, failing or hanging program never blocks the cell
        for long nor breaks it)."""
        try:
            backend = find_backend()
        except MissingBackendError as exc:
            return {"text/plain": self._fallback(str(exc).split(";")[0])}
        if backend is None:
            return {"text/plain": self.source}  # no program: the DOT text is all there is, as documented
        try:
            svg = run_dot(self.source, "svg", backend, timeout=self.display_timeout).decode("utf-8", "replace")
        except ShapevizError as exc:
            return {"text/plain": self._fallback(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}
        return {"text/plain": self.source, "image/svg+xml": svg}

    def _fallback(self, why: str) -> str:
        return (f"// shapeviz: the diagram was not drawn ({why}); its DOT text follows. "
                f"d.render('diagram.svg') draws it with a longer time limit.\n{self.source}")

    def __repr__(self) -> str:
        n = self.source.count("\n")
        return f"<Diagram {self.name!r}: {n} lines of DOT>"

    def __str__(self) -> str:
        return self.source
