"""The pytest plugin, run on small test files with pytester: the flag, the marker, the fixture, reports."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from shapeviz.apps.pytest_plugin import marker_inputs

pytest_plugins = ["pytester"]

# until the pytest11 entry point is installed, load the plugin by name (loading it twice would fail)
_INSTALLED = any(ep.value == "shapeviz.apps.pytest_plugin" for ep in entry_points(group="pytest11"))
PLUGIN = () if _INSTALLED else ("-p", "shapeviz.apps.pytest_plugin")

MODELS = '''
import pytest
import torch
import torch.nn as nn


def hidden_2d():  # h_0 without the layers dim: torch raises too, with less to say
    rnn = nn.RNN(10, 20, batch_first=True)
    return rnn(torch.randn(3, 5, 10), torch.zeros(3, 20))


def untransposed_embedding():  # (bs, T) tokens -> (bs, T, emb) into a seq-first RNN: runs silently
    model = nn.Sequential(nn.Embedding(28, 16), nn.RNN(16, 32))
    return model(torch.zeros(2, 5, dtype=torch.long))


def fine():
    lstm = nn.LSTM(10, 20, num_layers=2, batch_first=True)
    out, (h_n, c_n) = lstm(torch.randn(3, 5, 10))  # (bs, T, emb)
    assert out.shape == (3, 5, 20) and h_n.shape == (2, 3, 20)
'''


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # hypothesis' plugin costs seconds per inner session and plays no part here
    return pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--strict-markers",
                              "-W", "ignore::pytest.PytestAssertRewriteWarning", *args)


def test_flag_checks_the_whole_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(models=MODELS, test_suite='''
from models import fine, hidden_2d, untransposed_embedding

def test_fine():
    fine()

def test_hidden():
    hidden_2d()

def test_layout():
    untransposed_embedding()
''')
    plain = _run(pytester)
    plain.assert_outcomes(passed=2, failed=1)  # torch's RuntimeError; the layout mistake runs silently
    assert "ShapeError" not in plain.stdout.str()

    checked = _run(pytester, "--shapeviz", "--shapeviz-inputs", "bs T")
    checked.assert_outcomes(passed=1, failed=2)
    checked.stdout.fnmatch_lines([
        "shapeviz: checking every recurrent module call, inputs (bs T)",
        "E *ShapeError: [[]hidden_ndim[]] <model>: RNN(10, 20, batch_first=True): argument `h_0`",
        "E *a layer's state is 3-D (layers*D, bs, h) even with one layer; got 2-D",
        "E *expected: (layers*D=1, bs=3, h=20)",
        "E *actual:   (3, 20)",
        "E *hint: h0 = h0.unsqueeze(0)  # (bs, h) -> (layers*D=1, bs, h)",
        "E *ShapeError: [[]batch_first_swap[]] 1: RNN(16, 32): argument `input`",
        "E *hint: x = x.transpose(0, 1)  # (bs, T, emb) -> (T, bs, emb)",
    ])


def test_traceback_ends_in_user_code(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(models=MODELS, test_tb='''
from models import hidden_2d

def test_hidden():
    hidden_2d()
''')
    result = _run(pytester, "--shapeviz", "--tb=short", "--junitxml=report.xml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["test_tb.py:4: in test_hidden", "    hidden_2d()",
                                 "models.py:8: in hidden_2d", "    return rnn(torch.randn(3, 5, 10), *",
                                 "E *ShapeError: [[]hidden_ndim[]]*"])
    out = result.stdout.str()
    assert "shapeviz/watch.py" not in out and "torch/nn/modules" not in out
    xml = (pytester.path / "report.xml").read_text()
    assert '<property name="shapeviz_error" value="hidden_ndim" />' in xml


def test_marker_for_one_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(models=MODELS, test_marked='''
import pytest
from models import fine, untransposed_embedding

@pytest.mark.shapeviz(inputs="bs T")
def test_checked():
    untransposed_embedding()

def test_unchecked():
    untransposed_embedding()

@pytest.mark.shapeviz
def test_checked_fine():
    fine()
''')
    result = _run(pytester, "-rA")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["E *ShapeError: [[]batch_first_swap[]] 1: RNN(16, 32): argument `input`",
                                 "FAILED test_marked.py::test_checked - *ShapeError*"])


def test_marker_is_registered_and_checked(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.shapeviz(inputs=None): check every call of a recurrent module*"])
    pytester.makepyfile(test_bad_marker='''
import pytest

@pytest.mark.shapeviz(inputs="bs 3T")
def test_x():
    pass
''')
    bad = _run(pytester)
    bad.assert_outcomes(failed=1)
    bad.stdout.fnmatch_lines(["*SpecError: @pytest.mark.shapeviz(inputs=...): '3T' in 'bs 3T' is not a dimension*"])


def test_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(models=MODELS, test_fixture='''
import torch.nn as nn
import shapeviz as sv
from models import fine, hidden_2d, untransposed_embedding

def test_on(shapeviz_checking):
    assert sv.enabled() and shapeviz_checking is sv.checking
    fine()

def test_hidden(shapeviz_checking):
    hidden_2d()

def test_named_block(shapeviz_checking):
    with shapeviz_checking(inputs="bs T"):
        untransposed_embedding()

def test_without_fixture():
    assert not sv.enabled()
    untransposed_embedding()
''')
    result = _run(pytester)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["E *ShapeError: [[]hidden_ndim[]] RNN(10, 20, batch_first=True): argument `h_0`",
                                 "E *ShapeError: [[]batch_first_swap[]] 1: RNN(16, 32): argument `input`",
                                 "FAILED test_fixture.py::test_hidden - *ShapeError*",
                                 "FAILED test_fixture.py::test_named_block - *ShapeError*"])


def test_dry_run_error_with_its_trace(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(models=MODELS, test_dry='''
import torch.nn as nn
from shapeviz.runtime.dryrun import dry_run

def test_dry():
    run = dry_run(nn.Sequential(nn.Embedding(28, 16), nn.RNN(16, 32)), "bs=2,T=5")
    run.raise_error()
''')
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E *ShapeError: [[]batch_first_swap[]] 1: RNN(16, 32): argument `input`",
                                 "E *shapeviz.trace: the forward pass of Sequential raised after 3 recorded calls:",
                                 "E *1   0 (Embedding): input (bs=2, T=5) int64 @meta → *",
                                 "test_dry.py:6: ShapeError"])


def test_marker_inputs_validation() -> None:
    assert marker_inputs({"inputs": "T, bs, emb"}, ()) == "T bs emb"
    with pytest.raises(ValueError, match="takes one argument"):
        marker_inputs({"input": "bs T"}, ())
    with pytest.raises(ValueError, match="takes one argument"):
        marker_inputs({"inputs": "bs T"}, ("bs T",))


# ---------------------------------------------------------------- loading: -p, usage errors, a light import
def test_dash_p_public_name_with_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(models=MODELS, test_suite='''
from models import untransposed_embedding

def test_layout():
    untransposed_embedding()
''')
    # the public module named with -p, beside the installed entry point (or the plugin itself when none is)
    result = _run(pytester, "-p", "shapeviz.pytest_plugin", "--shapeviz", "--shapeviz-inputs", "bs T")
    assert "already registered" not in result.stdout.str() + result.stderr.str()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E *ShapeError: [[]batch_first_swap[]] 1: RNN(16, 32): argument `input`"])


@pytest.mark.parametrize("inputs", ["bs bs", "bs 3T", ""])
def test_bad_shapeviz_inputs_is_a_usage_error(pytester: pytest.Pytester, inputs: str) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = _run(pytester, "--shapeviz", "--shapeviz-inputs", inputs)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in out and "Traceback" not in out
    result.stderr.fnmatch_lines(["ERROR: --shapeviz-inputs: *"])


_REPORT_MODULES = '''
import sys

def pytest_sessionfinish(session):
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("shapeviz"))
    print("\\nLOADED " + " ".join(loaded))
'''


@pytest.mark.parametrize("flag", [(), ("--shapeviz",)])
def test_an_unused_plugin_imports_neither_torch_nor_shapeviz(pytester: pytest.Pytester, flag: tuple[str, ...]) -> None:
    pytester.makeconftest(_REPORT_MODULES)
    pytester.makepyfile(test_plain="def test_x():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess(*PLUGIN, "-p", "no:cacheprovider", "-s", *flag)
    result.assert_outcomes(passed=1)
    loaded = next(line for line in result.stdout.lines if line.startswith("LOADED")).split()[1:]
    assert "shapeviz.apps.pytest_plugin" in loaded  # the plugin is there ...
    if flag:  # ... and what it loads when used, so the check below can see torch
        assert "torch" in loaded and "shapeviz.runtime.watching" in loaded
    else:
        assert set(loaded) == {"shapeviz", "shapeviz._errors", "shapeviz._views", "shapeviz.apps",
                               "shapeviz.apps.pytest_plugin"}
