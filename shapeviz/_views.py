"""How data shows itself: renderers are registered from above, so no data class imports its renderer.

>>> register("Demo.html", lambda obj: f"<b>{obj}</b>")
>>> show("Demo.html", 1)
'<b>1</b>'

``shapeviz/__init__.py`` (the facade, above every sub-package) registers each renderer as a thunk that
imports its module on first use: ``ShapeError._repr_html_`` asks for ``"ShapeError.html"`` and gets
``shapeviz.render.html``'s, yet ``_errors`` imports nothing from ``render``. The import graph of the
sub-packages stays a DAG with ``_errors``, ``_views`` and ``core`` at the bottom.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["register", "show"]

_RENDERERS: dict[str, Callable[..., Any]] = {}


def register(kind: str, fn: Callable[..., Any]) -> None:
    """Make ``fn`` the renderer of ``kind`` (``"ShapeError.html"``, ``"Trace.unroll"``, …)."""
    _RENDERERS[kind] = fn


def show(kind: str, *args: Any, **kwargs: Any) -> Any:
    """Render with the renderer registered for ``kind``."""
    fn = _RENDERERS.get(kind)
    if fn is None:
        raise LookupError(f"no renderer is registered for {kind!r}; registered: {', '.join(sorted(_RENDERERS))}")
    return fn(*args, **kwargs)
