"""Where the user's code is on the stack: the one test for "a frame of torch or of shapeviz".

>>> import shapeviz.core.frames as frames
>>> frames.is_library(frames.__file__), is_library("/home/me/train.py")
(True, False)

shapeviz's own example and reference models (the gallery's models, the from-scratch RNNs) count as
user code: they stand for code people write, so traces show their lines and ops.
"""

from __future__ import annotations

import os
from functools import lru_cache

SHAPEVIZ_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
USER_CODE_IN_SHAPEVIZ = (os.path.join("gallery", "models.py"), os.path.join("annotations", "scratch_models.py"))


@lru_cache(maxsize=1)
def torch_dir() -> str:
    """The folder torch is installed in (torch is imported by the caller's need, never at import here)."""
    import torch

    return os.path.dirname(torch.__file__) + os.sep


@lru_cache(maxsize=4096)
def is_library(filename: str) -> bool:
    """True for a file of torch or of shapeviz (but not shapeviz's example models).

    >>> is_library("<stdin>")
    False
    """
    if filename.startswith(SHAPEVIZ_DIR):
        return not filename.endswith(USER_CODE_IN_SHAPEVIZ)
    return filename.startswith(torch_dir())


def is_torch(filename: str) -> bool:
    """True for a file inside torch."""
    return filename.startswith(torch_dir())
