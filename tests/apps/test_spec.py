"""parse_spec: the allow-list, literal arguments, checked values; fuzzed with hypothesis."""

from __future__ import annotations

import pytest
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shapeviz as sv
from shapeviz.apps.spec import CLASSES, parse_spec
from shapeviz.core.dimensions import parse_sizes


@pytest.mark.parametrize(("text", "cls", "attrs"), [
    ("LSTM(10, 20, num_layers=2, bidirectional=True)", nn.LSTM,
     {"input_size": 10, "hidden_size": 20, "num_layers": 2, "bidirectional": True}),
    ("GRUCell(8, 16)", nn.GRUCell, {"input_size": 8, "hidden_size": 16}),
    ("nn.RNN(4, 3, 1, 'relu', True, True)", nn.RNN, {"nonlinearity": "relu", "batch_first": True}),
    ("torch.nn.LSTM(10, 20, proj_size=5)", nn.LSTM, {"proj_size": 5}),
    ("RNNCell(input_size=4, hidden_size=2, bias=False)", nn.RNNCell, {"bias": False}),
    ("  GRU(8, 16, dropout=0.5, num_layers=2)  ", nn.GRU, {"dropout": 0.5}),
    ("LSTMCell(3, 4)", nn.LSTMCell, {"hidden_size": 4}),
])
def test_valid_specs_build_the_module(text: str, cls: type, attrs: dict) -> None:
    m = parse_spec(text)
    assert type(m) is cls
    for k, v in attrs.items():
        assert getattr(m, k) == v


def test_meta_device_allocates_nothing() -> None:
    m = parse_spec("LSTM(1000, 2000, num_layers=4)", device="meta")
    assert m.weight_ih_l0.device.type == "meta"
    assert sv.conventions(m).shapes(T=5, bs=3)["h_n"] == (4, 3, 2000)


@pytest.mark.parametrize(("text", "fragment"), [
    ("Linear(3, 4)", "unknown class 'Linear'"),
    ("os.LSTM(3, 4)", "unknown class 'os.LSTM'"),
    ("__import__('os').system('x')", "must be a call of a class name"),
    ("LSTM(__import__('os').system('x'), 4)", "must be a literal"),
    ("LSTM(10, 20, foo=1)", "LSTM has no argument 'foo'"),
    ("GRU(10, 20, proj_size=5)", "GRU has no argument 'proj_size'"),
    ("RNNCell(3, 4, num_layers=2)", "RNNCell has no argument 'num_layers'"),
    ("LSTM(-1, 20)", "input_size must be a positive int, got -1"),
    ("GRU(8, 0)", "hidden_size must be a positive int, got 0"),
    ("LSTM(10, 20, num_layers=0)", "num_layers must be an int from 1 to 100"),
    ("LSTM(10, 20, proj_size=20)", "proj_size must be smaller than hidden_size=20"),
    ("LSTM(10, 20, dropout=2)", "dropout must be a number between 0 and 1"),
    ("LSTM(10, 20, bidirectional=1)", "bidirectional must be True or False"),
    ("RNN(10, 20, nonlinearity='sigmoid')", "nonlinearity must be 'tanh' or 'relu'"),
    ("LSTM(10.5, 20)", "input_size must be a positive int"),
    ("LSTM(x, 20)", "got the expression 'x'"),
    ("LSTM(10 ** 9, 20)", "must be a literal"),
    ("LSTM(*sizes)", "*args are not allowed"),
    ("LSTM(10, **kw)", "**kwargs are not allowed"),
    ("LSTM(10)", "LSTM needs hidden_size"),
    ("LSTM(10, 20, hidden_size=3)", "hidden_size is given twice"),
    ("LSTM(1, 2, 3, True, True, 0.0, True, 0, 9)", "at most 8 positional arguments"),
    ("LSTM(100000, 100000)", "would hold about"),
    ("LSTM", "must be a call"),
    ("LSTM(10, 20", "not a Python call"),
    ("", "the spec is empty"),
    ("LSTM(1, 2)" + " " * 400, "characters long"),
])
def test_bad_specs_raise_spec_error_listing_what_is_valid(text: str, fragment: str) -> None:
    with pytest.raises(sv.SpecError) as info:
        parse_spec(text)
    msg = str(info.value)
    assert fragment in msg
    assert "LSTM(input_size, hidden_size, num_layers" in msg or "characters long" in msg


def test_non_text_is_a_spec_error() -> None:
    with pytest.raises(sv.SpecError, match="a layer spec is text"):
        parse_spec(42)  # type: ignore[arg-type]


_names = st.sampled_from([*CLASSES, "nn.LSTM", "torch.nn.GRU", "Linear", "os.system", "__import__", "eval"])
_values = st.one_of(st.integers(-5, 10**7), st.floats(allow_nan=True), st.booleans(),
                    st.sampled_from(["'tanh'", "'relu'", "x", "[1]", "(1,)", "None", "f()", "1+2", "-0"]))
_keys = st.sampled_from(["input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                         "bidirectional", "proj_size", "nonlinearity", "device", "foo"])


@st.composite
def _specs(draw: st.DrawFn) -> str:
    args = [str(v) for v in draw(st.lists(_values, max_size=9))]
    kws = [f"{k}={v}" for k, v in draw(st.lists(st.tuples(_keys, _values), max_size=4))]
    return f"{draw(_names)}({', '.join(args + kws)})"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_specs(), st.text(max_size=80)))
def test_fuzz_parse_spec_raises_only_spec_error(text: str) -> None:
    try:
        m = parse_spec(text, device="meta")
    except sv.SpecError:
        return
    assert type(m).__name__ in CLASSES  # anything accepted is one of the six layers


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40),
                 st.lists(st.tuples(st.text(max_size=6), st.text(max_size=4)), max_size=4)
                 .map(lambda kv: ",".join(f"{k}={v}" for k, v in kv))))
def test_fuzz_parse_sizes_raises_only_spec_error(text: str) -> None:
    try:
        sizes = parse_sizes(text)
    except sv.SpecError:
        return
    assert sizes and all(isinstance(v, int) and v >= 0 for v in sizes.values())


def test_a_huge_stack_is_refused_at_once() -> None:
    """Found by the fuzzer: num_layers in the millions took minutes to build, even on meta."""
    with pytest.raises(sv.SpecError, match="num_layers must be an int from 1 to 100"):
        parse_spec("GRU(1, 1, num_layers=5000000)", device="meta")
    assert parse_spec("GRU(1, 1, num_layers=100)", device="meta").num_layers == 100
