"""The pytest plugin: check every recurrent call of a test suite, and explain a ShapeError fully.

>>> from shapeviz.apps.pytest_plugin import marker_inputs
>>> marker_inputs({"inputs": "bs T"}, ())  # @pytest.mark.shapeviz(inputs="bs T") names (bs, T)
'bs T'

* ``pytest --shapeviz``: every test runs inside :func:`shapeviz.checking` (``--shapeviz-inputs="bs T"``
  names the dims of each model's first input, as ``checking(inputs=...)`` does);
* ``@pytest.mark.shapeviz`` / ``@pytest.mark.shapeviz(inputs="bs T")``: the same for one test (or a
  module, with ``pytestmark``);
* the ``shapeviz_checking`` fixture: checking on from the fixture's setup to its teardown; its value
  is :func:`shapeviz.checking`, to name input dims for a block: ``with shapeviz_checking(inputs="bs T"):``;
* a test that fails with a :class:`~shapeviz.ShapeError` is reported with the whole explanation
  (module, argument, expected and actual in named dims, the hints, and the calls traced before it
  when it came out of :func:`shapeviz.tracing.session.trace` or a dry run), and its traceback ends at the line
  of your code that made the call: torch's and shapeviz's frames below it, with their locals, are
  left out. The error's code is recorded as the ``shapeviz_error`` user property (JUnit XML).

Checking covers the test's call phase (and fixtures that request ``shapeviz_checking``); hooks and
patches are removed when the test ends, whatever happens. Registered through the ``pytest11``
entry point, or with ``-p shapeviz.pytest_plugin`` (where no entry point is installed).

Installed but unused, the plugin costs nothing: this module imports only pytest and the standard
library, and torch and shapeviz's checking load only when ``--shapeviz``, the marker or the fixture
is used (a bad ``--shapeviz-inputs`` is a usage error, found at startup).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import pytest

__all__ = ["marker_inputs", "shapeviz_checking"]

_MARKER = ("shapeviz(inputs=None): check every call of a recurrent module in this test "
           "(shapeviz.checking); inputs='bs T' names the dims of each model's first input")


def marker_inputs(kwargs: Mapping[str, Any], args: Sequence[Any]) -> str | None:
    """The input dim names of a ``shapeviz`` marker (``inputs="bs T"`` or positional), checked.

    >>> marker_inputs({}, ("T bs emb",))
    'T bs emb'
    >>> marker_inputs({}, ()) is None
    True
    """
    from shapeviz._errors import SpecError
    from shapeviz.core.dimensions import parse_names

    unknown = set(kwargs) - {"inputs"}
    if unknown or len(args) > 1 or (args and "inputs" in kwargs):
        raise SpecError(f"@pytest.mark.shapeviz takes one argument, inputs='bs T'; got args={tuple(args)!r}, "
                        f"kwargs={dict(kwargs)!r}")
    inputs = kwargs.get("inputs", args[0] if args else None)
    if inputs is None:
        return None
    return " ".join(parse_names(inputs, "@pytest.mark.shapeviz(inputs=...)"))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("shapeviz", "shapeviz: checked shapes of recurrent layers")
    group.addoption("--shapeviz", action="store_true", default=False,
                    help="check every call of every recurrent module (nn.RNN/LSTM/GRU and cells) in every test")
    group.addoption("--shapeviz-inputs", default=None, metavar="NAMES",
                    help="with --shapeviz: the dims of each model's first input, e.g. 'bs T'")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER)
    inputs = config.getoption("shapeviz_inputs", None)
    if inputs is not None:  # a bad spec fails the run at once, as a usage error, not per test
        from shapeviz._errors import SpecError
        from shapeviz.core.dimensions import parse_names

        try:
            parse_names(inputs, "--shapeviz-inputs")
        except SpecError as exc:
            raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str | None:
    if not config.getoption("shapeviz", False):
        return None
    inputs = config.getoption("shapeviz_inputs", None)
    named = f", inputs ({inputs})" if inputs else ""
    return f"shapeviz: checking every recurrent module call{named}"


def _inputs_for(item: pytest.Item) -> tuple[bool, str | None]:
    """Whether ``item`` runs checked, and with which input names (the marker wins over the flag)."""
    marker = item.get_closest_marker("shapeviz")
    if marker is not None:
        return True, marker_inputs(marker.kwargs, marker.args)
    if item.config.getoption("shapeviz", False):
        return True, item.config.getoption("shapeviz_inputs", None)
    return False, None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    on, inputs = _inputs_for(item)
    if not on:
        return (yield)
    from shapeviz.runtime.watching import checking

    with checking(inputs=inputs):
        return (yield)


@pytest.fixture
def shapeviz_checking() -> Iterator[Callable[..., Any]]:
    """Checking on for the test that requests it (setup to teardown); the value is ``sv.checking``.

    >>> import torch, torch.nn as nn
    >>> def test_lm(shapeviz_checking):  # doctest: +SKIP
    ...     lm = nn.Sequential(nn.Embedding(28, 16), nn.GRU(16, 32, batch_first=True))
    ...     with shapeviz_checking(inputs="bs T"):
    ...         out, h_n = lm(torch.zeros(2, 5, dtype=torch.long))  # (bs=2, T=5, D*h=32), (1, 2, 32)
    """
    from shapeviz.runtime.watching import checking

    with checking():
        yield checking


def _end_at_user_code(tb: TracebackType | None) -> bool:
    """Cut the raw traceback after the innermost frame outside torch and shapeviz, in place.

    The report then ends at the line of your code that called the module, instead of in
    shapeviz's check (pytest rebuilds its entries from the raw chain, so filtering them is undone)."""
    from shapeviz.core.frames import is_library

    chain: list[TracebackType] = []
    while tb is not None:
        chain.append(tb)
        tb = tb.tb_next
    users = [i for i, t in enumerate(chain) if not is_library(t.tb_frame.f_code.co_filename)]
    if not users or users[-1] == len(chain) - 1:
        return False
    chain[users[-1]].tb_next = None
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    excinfo = call.excinfo
    errors = sys.modules.get("shapeviz._errors")  # a ShapeError exists only once shapeviz has loaded
    if errors is not None and excinfo is not None and isinstance(excinfo.value, errors.ShapeError):
        from _pytest._code import Traceback

        err = excinfo.value
        if _end_at_user_code(excinfo.tb):
            excinfo.traceback = Traceback(excinfo.tb)
        item.user_properties.append(("shapeviz_error", err.code))  # JUnit XML <property>, for CI
    return (yield)
