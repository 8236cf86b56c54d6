"""shapeviz: checked and visible shapes for PyTorch recurrent layers.

>>> import torch.nn as nn, shapeviz as sv
>>> sv.conventions(nn.GRU(8, 16, num_layers=2)).shapes(T=5, bs=3)["h_n"]
(2, 3, 16)
"""

from shapeviz import nn, scratch, typing
from shapeviz._errors import CODES, MissingBackendError, ShapeError, ShapevizError, SpecError
from shapeviz.check import check_call
from shapeviz.conventions import Conventions, conventions
from shapeviz.dims import dims
from shapeviz.dry_run import DryRun, dry_run
from shapeviz.ipython import load_ipython_extension, unload_ipython_extension
from shapeviz.render.backend import Diagram, find_backend
from shapeviz.render.text import explain
from shapeviz.render.unroll import unroll
from shapeviz.trace import Call, TensorInfo, Trace, trace
from shapeviz.typing import check
from shapeviz.watch import checking, disable, enable, enabled, watch

__version__ = "0.1.0"

__all__ = [
    "CODES",
    "Call",
    "Conventions",
    "Diagram",
    "DryRun",
    "MissingBackendError",
    "ShapeError",
    "ShapevizError",
    "SpecError",
    "TensorInfo",
    "Trace",
    "check",
    "check_call",
    "checking",
    "conventions",
    "dims",
    "disable",
    "dry_run",
    "enable",
    "enabled",
    "explain",
    "find_backend",
    "load_ipython_extension",
    "nn",
    "scratch",
    "trace",
    "typing",
    "unload_ipython_extension",
    "unroll",
    "watch",
]
