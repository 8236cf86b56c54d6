"""shapeviz: checked and visible shapes for PyTorch recurrent layers.

>>> import torch.nn as nn, shapeviz as sv
>>> sv.conventions(nn.GRU(8, 16, num_layers=2)).shapes(T=5, bs=3)["h_n"]
(2, 3, 16)

``import shapeviz`` itself loads only the error classes: every other public name is imported from
its implementation module on first use (module ``__getattr__``), so a program, a notebook or a
pytest session that never uses shapeviz pays nothing for it being installed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from shapeviz import _views
from shapeviz._errors import DryRunError, MissingBackendError, ShapeError, ShapevizError, ShapeWarning, SpecError

__version__ = "0.1.0"

# public name -> the module that defines it (a module path alone: the name is that module)
_LAZY: dict[str, str] = {
    "Conventions": "shapeviz.core.model",
    "conventions": "shapeviz.core.model",
    "dims": "shapeviz.core.dimensions",
    "check_call": "shapeviz.runtime.fastcheck",
    "checker": "shapeviz.runtime.fastcheck",
    "checking": "shapeviz.runtime.watching",
    "disable": "shapeviz.runtime.watching",
    "enable": "shapeviz.runtime.watching",
    "enabled": "shapeviz.runtime.watching",
    "watch": "shapeviz.runtime.watching",
    "recurrent": "shapeviz.runtime.declared",
    "check": "shapeviz.annotations.aliases",
    "Call": "shapeviz.tracing.records",
    "TensorInfo": "shapeviz.tracing.records",
    "Trace": "shapeviz.tracing.records",
    "trace": "shapeviz.tracing.session",
    "name": "shapeviz.tracing.naming",
    "DryRun": "shapeviz.runtime.dryrun",
    "dry_run": "shapeviz.runtime.dryrun",
    "Diagram": "shapeviz.render.backend",
    "explain": "shapeviz.render.text",
    "unroll": "shapeviz.render.unrolled",
    "load_ipython_extension": "shapeviz.apps.ipython",
    "unload_ipython_extension": "shapeviz.apps.ipython",
}
_SUBMODULES = ("nn", "scratch", "typing")  # the public import paths shapeviz.nn, .scratch, .typing
_DEPRECATED = {"CODES": "shapeviz._errors", "find_backend": "shapeviz.render.backend"}
"""Implementation details once re-exported here: still reachable, with a DeprecationWarning."""

__all__ = [
    "Call",
    "Conventions",
    "Diagram",
    "DryRun",
    "DryRunError",
    "MissingBackendError",
    "ShapeError",
    "ShapeWarning",
    "ShapevizError",
    "SpecError",
    "TensorInfo",
    "Trace",
    "check",
    "check_call",
    "checker",
    "checking",
    "conventions",
    "dims",
    "disable",
    "dry_run",
    "enable",
    "enabled",
    "explain",
    "load_ipython_extension",
    "name",
    "nn",
    "recurrent",
    "scratch",
    "trace",
    "typing",
    "unload_ipython_extension",
    "unroll",
    "watch",
]


def _lazy(module: str, name: str) -> Any:
    """A renderer that imports its module on first use (data never imports render: see shapeviz._views)."""
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(import_module(module), name)(*args, **kwargs)
    return call


_views.register("ShapeError.html", _lazy("shapeviz.render.html", "shape_error_html"))
_views.register("Conventions.html", _lazy("shapeviz.render.text", "conventions_html"))
_views.register("Trace.table", _lazy("shapeviz.render.table", "trace_table"))
_views.register("Trace.plot", _lazy("shapeviz.render.plot", "plot_trace"))
_views.register("Trace.unroll", _lazy("shapeviz.render.unrolled", "unroll"))


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value: Any = import_module(f"shapeviz.{name}")
    elif name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
    elif name in _DEPRECATED:
        import warnings

        warnings.warn(f"shapeviz.{name} is an implementation detail and no longer public (it lives in "
                      f"{_DEPRECATED[name]}); it will go in a later release", DeprecationWarning, stacklevel=2)
        return getattr(import_module(_DEPRECATED[name]), name)  # not cached: it warns every time
    else:
        raise AttributeError(f"module 'shapeviz' has no attribute {name!r}")
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static checkers see the real names
    from shapeviz import nn, scratch, typing
    from shapeviz.annotations.aliases import check
    from shapeviz.apps.ipython import load_ipython_extension, unload_ipython_extension
    from shapeviz.core.dimensions import dims
    from shapeviz.core.model import Conventions, conventions
    from shapeviz.render.backend import Diagram
    from shapeviz.render.text import explain
    from shapeviz.render.unrolled import unroll
    from shapeviz.runtime.declared import recurrent
    from shapeviz.runtime.dryrun import DryRun, dry_run
    from shapeviz.runtime.fastcheck import check_call, checker
    from shapeviz.runtime.watching import checking, disable, enable, enabled, watch
    from shapeviz.tracing.records import Call, TensorInfo, Trace
    from shapeviz.tracing.session import trace
