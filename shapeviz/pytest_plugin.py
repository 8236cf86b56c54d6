"""The public import path of shapeviz's pytest plugin (the plugin itself: :mod:`shapeviz.apps.pytest_plugin`).

>>> from shapeviz.pytest_plugin import marker_inputs
>>> marker_inputs({"inputs": "bs T"}, ())
'bs T'

pytest loads the plugin through the ``pytest11`` entry point named ``shapeviz``. Naming this module
with ``-p shapeviz.pytest_plugin`` also works: it registers the one plugin under that entry point's
name (once, whichever way comes first), so the plugin is never registered twice.
"""

from __future__ import annotations

from typing import Any

_ENTRY_POINT = "shapeviz"


def pytest_addhooks(pluginmanager: Any) -> None:
    """Register the real plugin once (``-p shapeviz.pytest_plugin`` comes before the entry points load)."""
    from shapeviz.apps import pytest_plugin as plugin

    if pluginmanager.get_plugin(_ENTRY_POINT) is None and not pluginmanager.is_registered(plugin):
        pluginmanager.register(plugin, _ENTRY_POINT)


def __getattr__(name: str) -> Any:
    from shapeviz.apps import pytest_plugin as plugin

    if name in plugin.__all__:
        return getattr(plugin, name)
    raise AttributeError(f"module 'shapeviz.pytest_plugin' has no attribute {name!r}")
