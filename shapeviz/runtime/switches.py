"""The two switches every check asks first: ``SHAPEVIZ_DISABLE`` (the kill switch) and "is torch compiling?".

>>> env_disabled(), is_compiling(), dynamo_compiling()
(False, False, False)
"""

from __future__ import annotations

import os
from typing import Any

from shapeviz.core.compiling import dynamo_compiling, is_compiling

__all__ = ["ENV_DATA", "ENV_KEY", "dynamo_compiling", "env_disabled", "is_compiling"]

_ENV_NAME = "SHAPEVIZ_DISABLE"
_ENV_TRUE = ("1", "true", "yes", "on")
try:  # the environment's own mapping, keyed as the platform stores it (bytes on POSIX)
    ENV_KEY: Any = os.environ.encodekey(_ENV_NAME)  # type: ignore[attr-defined]
    ENV_DATA: Any = os.environ._data  # type: ignore[attr-defined]  # the same dict os.environ[...] = writes
except AttributeError:  # pragma: no cover - os.environ replaced by a plain mapping
    ENV_KEY, ENV_DATA = None, {None: ""}  # never None: env_disabled() is asked every time


def env_disabled() -> bool:
    """True when ``SHAPEVIZ_DISABLE`` is set to a true value (1, true, yes, on); read on every call.

    The one reader of the variable: every entry point (check_call, each watched or checked call,
    watch(), checking(), enable(), each @check call) asks it. An exact read of ``os.environ``'s own
    mapping (``os.environ.get`` costs a KeyError when the variable is unset).

    >>> env_disabled()
    False
    """
    try:
        raw = os.environ._data.get(ENV_KEY)  # type: ignore[attr-defined]
    except AttributeError:  # os.environ replaced by something else: read it the ordinary way
        raw = os.environ.get(_ENV_NAME)
    else:
        if raw is None:
            return False
        raw = os.environ.decodevalue(raw)  # type: ignore[attr-defined]
    return raw is not None and raw.strip().lower() in _ENV_TRUE
