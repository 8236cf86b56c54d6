"""This thread's torch-function mode stack: taking the op mode off during a quiet module call, and back.

>>> isinstance(quiet_hooks_supported(), bool)
True

A torch module without children runs none of your code: the recorder's op mode steps aside while
it runs (:meth:`shapeviz.tracing.recorder.Tracer.enter`, :class:`Quiet`) and is put back when it ends,
on every path, in the thread whose mode stack it was taken from.
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import Any

import torch
import torch.nn as nn

__all__ = ["Quiet", "pop_mode", "push_mode", "push_under", "quiet_hooks_supported", "take_out"]


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


class Quiet:
    """The quiet module call of one trace, if one is running: the op mode is off this thread's stack meanwhile.

    >>> import torch
    >>> from torch.overrides import TorchFunctionMode
    >>> q, mode, lin = Quiet(), TorchFunctionMode(), torch.nn.Linear(2, 2)
    >>> with mode:
    ...     q.step_aside(mode, 1, lin)
    ...     off = torch._C._len_torch_function_stack()
    ...     q.ends(lin, 1) and q.back(mode)
    ...     on = torch._C._len_torch_function_stack()
    >>> off, on
    (0, 1)
    """

    __slots__ = ("depth", "module", "thread")

    def __init__(self) -> None:
        self.depth: int | None = None  # how many module calls were open when the quiet one started
        self.thread = 0  # the thread it took the mode off in (the one whose mode stack holds it)
        self.module = 0  # id() of its module

    def step_aside(self, mode: Any, depth: int, module: Any) -> None:
        """A quiet call of ``module`` starts with ``depth`` calls open: ``mode`` leaves this thread's stack
        (unless a quiet call is running already, or ``mode`` is not on top)."""
        if self.depth is not None:
            return
        self.depth, self.thread, self.module = depth, threading.get_ident(), id(module)
        if not pop_mode(mode):
            self.depth = None

    def ends(self, module: Any, depth: int) -> bool:
        """Whether a call of ``module`` ending now, with ``depth`` calls open, ends the quiet call (or one around
        it), in the thread the mode was taken off in (never onto another thread's mode stack)."""
        return self.depth is not None and threading.get_ident() == self.thread and (
            id(module) == self.module or self.depth >= depth)

    def back(self, mode: Any) -> None:
        """Put ``mode`` back if a quiet call took it off (every path of the forward ends here)."""
        if self.depth is not None:
            self.depth = None
            push_mode(mode)


def push_under(mode: Any) -> None:
    """Put ``mode`` at the bottom of this thread's torch-function mode stack, under every mode already there.

    Contexts entered before it and left after it (``with torch.device("meta"):`` around ``watch(ops=True)``)
    pop the top mode when they exit: with shapeviz's mode beneath them, they pop their own.
    """
    above = []
    while torch._C._len_torch_function_stack():
        above.append(torch.overrides._pop_mode())  # type: ignore[attr-defined]
    torch.overrides._push_mode(mode)  # type: ignore[attr-defined]
    for m in reversed(above):
        torch.overrides._push_mode(m)  # type: ignore[attr-defined]


def take_out(mode: Any) -> None:
    """Pop ``mode`` from this thread's torch-function mode stack, putting back the modes above it."""
    if not any(m is mode for m in torch.overrides._get_current_function_mode_stack()):  # type: ignore[attr-defined]
        return
    above = []
    while True:
        top = torch.overrides._pop_mode()  # type: ignore[attr-defined]
        if top is mode:
            break
        above.append(top)
    for m in reversed(above):
        torch.overrides._push_mode(m)  # type: ignore[attr-defined]
