"""Which dtypes a recurrent call may mix: read off torch's behaviour, not from memory.

>>> import torch
>>> with torch.autocast("cpu", dtype=torch.bfloat16):
...     castable(torch.bfloat16, torch.float32, torch.device("cpu"))
True
"""

from __future__ import annotations

import torch

__all__ = ["castable"]

_AUTOCAST_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32})
try:
    torch.is_autocast_enabled("cpu")
    _autocast_on = torch.is_autocast_enabled
except TypeError:  # pragma: no cover - torch < 2.4 asks one function per device

    def _autocast_on(device_type: str) -> bool:
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return device_type == "cuda" and torch.is_autocast_enabled()


def castable(a: torch.dtype, b: torch.dtype, device: torch.device) -> bool:
    """Two different dtypes a recurrent call may mix: inside ``torch.autocast`` for the tensors' device, torch
    runs layers and cells with any mix of float32, float16 and bfloat16 in input, state and weights (read off
    torch's behaviour, CPU and CUDA); float64 and everything outside autocast must match.

    >>> f32, bf16, cpu = torch.float32, torch.bfloat16, torch.device("cpu")
    >>> castable(bf16, f32, cpu)
    False
    >>> with torch.autocast("cpu", dtype=bf16):
    ...     castable(bf16, f32, cpu), castable(torch.float64, f32, cpu)
    (True, False)
    """
    if a not in _AUTOCAST_DTYPES or b not in _AUTOCAST_DTYPES:
        return False
    try:
        return _autocast_on(device.type)
    except RuntimeError:  # a device type autocast does not know (meta): no autocast there
        return False
