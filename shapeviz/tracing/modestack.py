"""This thread's torch-function mode stack: taking the op mode off during a quiet module call, and back.

>>> isinstance(quiet_hooks_supported(), bool)
True

A torch module without children runs none of your code: the recorder's op mode steps aside while
it runs (:meth:`shapeviz.tracing.recorder.Tracer.enter`) and is put back when it ends, on every path.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
import torch.nn as nn

__all__ = ["pop_mode", "push_mode", "quiet_hooks_supported"]


_STACK_API = all(hasattr(torch._C, n) for n in ("_len_torch_function_stack", "_get_function_stack_at",
                                                  "_pop_torch_function_stack", "_push_on_torch_function_stack"))


def pop_mode(mode: Any) -> bool:
    """Take ``mode`` off this thread's torch-function mode stack if it is on top; whether it was."""
    if mode is None or not _STACK_API:
        return False
    n = torch._C._len_torch_function_stack()
    if n == 0 or torch._C._get_function_stack_at(n - 1) is not mode:
        return False
    torch._C._pop_torch_function_stack()
    return True


def push_mode(mode: Any) -> None:
    torch._C._push_on_torch_function_stack(mode)


@functools.cache
def quiet_hooks_supported() -> bool:
    """Whether forward hooks can be called on every path (``always_call``, torch >= 2.1) and the mode
    stack can be read: what a quiet module call needs.

    >>> isinstance(quiet_hooks_supported(), bool)
    True
    """
    return _STACK_API and "always_call" in inspect.signature(nn.Module.register_forward_hook).parameters
