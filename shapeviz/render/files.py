"""Writing files all or nothing: a temporary file in the same folder, renamed into place.

>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as d:
...     p = write_atomic(Path(d) / "diagram.svg", "<svg/>")
...     p.read_text(), sorted(f.name for f in Path(d).iterdir())
('<svg/>', ['diagram.svg'])

Every file shapeviz writes (a rendered diagram, the gallery, the static site) goes through
:func:`write_atomic`: a disk that fills up, a ``ulimit -f``, an interrupt or a renderer that fails
leaves the old file as it was (or no file), never a truncated one, and no temporary file behind.
The new file gets the permissions a plain ``open(path, "w")`` would give it (an existing file's
mode is kept).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux), else set and reset."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file renamed into place; returns the path.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_atomic(Path(d) / "sub" / "a.txt", b"x")
    ...     _ = write_atomic(p, "y"); p.read_text()
    'y'

    Missing parent folders are made. On any error (``OSError``, ``KeyboardInterrupt`` …) the temporary
    file is removed and the error goes on; ``path`` is untouched."""
    p = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)  # a full disk or a file-size limit raises here or on close, before the rename
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return p
