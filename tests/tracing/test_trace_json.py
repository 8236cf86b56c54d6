"""``Trace.from_json`` on untrusted text: every malformed or crafted document raises one clear
``SpecError`` that says what was wrong and where; valid traces round-trip byte for byte.

The fuzz tests feed random JSON values and mutations of a real trace's JSON.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shapeviz import SpecError
from shapeviz.tracing.json_reader import MAX_CALLS, MAX_DEPTH, MAX_DIMS
from shapeviz.tracing.records import SCHEMA, Trace
from shapeviz.tracing.session import trace


class _Loop(nn.Module):
    """An LSTM layer, a cell loop and a few ops: modules, ops, conventions, repeats, produced_by."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.cell = nn.GRUCell(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        h = torch.zeros(x.shape[0], 5)
        steps = []
        for t in range(out.shape[1]):
            h = self.cell(out[:, t], h)
            steps.append(h)
        return torch.stack(steps, 1).reshape(-1, 5)


def _real() -> Trace:
    with torch.no_grad():
        return trace(_Loop(), torch.zeros(2, 3, 4), ops=True, inputs_dims="bs T emb")


REAL = _real()
REAL_JSON = REAL.to_json()
REAL_DICT: dict[str, Any] = json.loads(REAL_JSON)


def _load(doc: Any) -> Trace:
    return Trace.from_json(json.dumps(doc))


def _with(path: str, value: Any) -> dict[str, Any]:
    """REAL_DICT with the value at ``path`` (``"calls.1.inputs.0.shape"``) replaced; ``...`` deletes it."""
    doc = copy.deepcopy(REAL_DICT)
    *head, last = path.split(".")
    node: Any = doc
    for part in head:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return doc


def _recurrent_call() -> int:
    return next(i for i, c in enumerate(REAL_DICT["calls"]) if c["conventions"] is not None)


# ---------------------------------------------------------------------- valid traces
def test_a_real_trace_round_trips_byte_for_byte():
    loaded = Trace.from_json(REAL_JSON)
    assert loaded == REAL
    assert loaded.to_json() == REAL_JSON
    assert loaded.calls[0].kind == "module" and json.loads(REAL_JSON)["calls"][0]["kind"] == "module"
    assert loaded.table() == REAL.table()


def test_bytes_are_read_like_text():
    assert Trace.from_json(REAL_JSON.encode()) == REAL


# ---------------------------------------------------------------------- one test per malformed class
def test_not_json_at_all():
    with pytest.raises(SpecError, match="not valid JSON"):
        Trace.from_json('{"schema": "shapeviz.trace/1", "calls": [')


def test_not_text():
    with pytest.raises(SpecError, match="expected JSON text"):
        Trace.from_json(None)  # type: ignore[arg-type]


def test_wrong_schema_or_not_an_object():
    with pytest.raises(SpecError, match="not a shapeviz trace: expected schema"):
        _load([1, 2])
    with pytest.raises(SpecError, match="not a shapeviz trace: expected schema"):
        _load(_with("schema", "shapeviz.trace/3"))


def test_missing_required_keys():
    with pytest.raises(SpecError, match=r"^Trace.from_json: calls: missing"):
        _load(_with("calls", ...))
    with pytest.raises(SpecError, match=r"calls\[0\]\.index: missing"):
        _load(_with("calls.0.index", ...))
    with pytest.raises(SpecError, match=r"calls\[1\]\.inputs\[0\]\.shape: missing"):
        _load(_with("calls.1.inputs.0.shape", ...))


def test_wrong_types_say_where():
    cases = {
        "calls": ("calls", "a list"),
        "sizes": ("sizes", "an object"),
        "calls.0": (r"calls\[0\]", "an object"),
        "calls.1.inputs": (r"calls\[1\]\.inputs", "a list"),
        "calls.1.inputs.0": (r"calls\[1\]\.inputs\[0\]", "an object"),
        "calls.1.path": (r"calls\[1\]\.path", "a string"),
        "ops": ("ops", "true or false"),
        "calls.1.inputs.0.names": (r"calls\[1\]\.inputs\[0\]\.names", "null or a list"),
        "calls.1.inputs.0.repeat": (r"calls\[1\]\.inputs\[0\]\.repeat", "an int"),
    }
    for path, (where, what) in cases.items():
        with pytest.raises(SpecError, match=rf"{where}: expected {what}"):
            _load(_with(path, {"x": 1} if what != "an object" else 7))


def test_bad_shapes():
    for bad in ("5", [5, "a"], [5, -1], [5, 2.0], [True], [2 ** 63]):
        with pytest.raises(SpecError, match=r"calls\[1\]\.inputs\[0\]\.shape: expected a list of non-negative ints"):
            _load(_with("calls.1.inputs.0.shape", bad))
    with pytest.raises(SpecError, match=rf"at most {MAX_DIMS} dims"):
        _load(_with("calls.1.inputs.0.shape", [1] * (MAX_DIMS + 1)))


def test_names_must_match_the_shape():
    with pytest.raises(SpecError, match=r"names: expected 3 names \(one per dim\), got 2"):
        _load(_with("calls.1.inputs.0.names", ["a", "b"]))
    with pytest.raises(SpecError, match=r"names\[1\]: expected a string"):
        _load(_with("calls.1.inputs.0.names", ["a", 2, "c"]))


def test_closed_sets():
    with pytest.raises(SpecError, match=r"calls\[0\]\.kind: expected 'module' or 'op', got 'layer'"):
        _load(_with("calls.0.kind", "layer"))
    with pytest.raises(SpecError, match=r"packed: expected one of '', 'data', 'batch_sizes'"):
        _load(_with("calls.1.inputs.0.packed", "zip"))


def test_conventions_are_validated():
    i = _recurrent_call()
    with pytest.raises(SpecError, match=rf"calls\[{i}\]\.conventions\.family: .*'RNN', 'LSTM', 'GRU'"):
        _load(_with(f"calls.{i}.conventions.family", "Transformer"))
    with pytest.raises(SpecError, match=rf"calls\[{i}\]\.conventions: unexpected key 'dropout'"):
        _load(_with(f"calls.{i}.conventions.dropout", 0.5))
    with pytest.raises(SpecError, match=rf"calls\[{i}\]\.conventions\.batch_first: expected true or false"):
        _load(_with(f"calls.{i}.conventions.batch_first", "yes"))
    with pytest.raises(SpecError, match=rf"calls\[{i}\]\.conventions: cells have no num_layers"):
        doc = _with(f"calls.{i}.conventions.cell", True)
        _load(doc)


def test_a_crafted_million_layer_module_is_refused():
    """A 1,000,000-layer LSTM in a trace would build a 4 GB diagram; capped like apps/spec.py's."""
    i = _recurrent_call()
    with pytest.raises(SpecError, match=rf"calls\[{i}\]\.conventions\.num_layers: expected an int from 1 to 100"):
        _load(_with(f"calls.{i}.conventions.num_layers", 1_000_000))
    with pytest.raises(SpecError, match=r"hidden_size: expected an int from 1 to 10,000,000"):
        _load(_with(f"calls.{i}.conventions.hidden_size", 10 ** 12))


def test_counts_and_depth_are_capped():
    with pytest.raises(SpecError, match=rf"calls\[1\]\.depth: expected an int from 0 to {MAX_DEPTH:,}"):
        _load(_with("calls.1.depth", 10 ** 9))  # would indent the table by 2 GB of spaces
    with pytest.raises(SpecError, match=r"calls\[1\]\.parent: expected null or an int"):
        _load(_with("calls.1.parent", -3))
    with pytest.raises(SpecError, match=rf"calls: at most {MAX_CALLS:,} calls"):
        doc = dict(REAL_DICT, calls=[0] * (MAX_CALLS + 1))  # counted before read
        _load(doc)


def test_deep_nesting_is_not_a_recursion_error():
    text = '{"schema": "shapeviz.trace/1", "calls": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(SpecError, match="nested too deeply"):
        Trace.from_json(text)


def test_huge_number_literals():
    text = REAL_JSON.replace('"depth": 0', '"depth": ' + "9" * 5000, 1)
    with pytest.raises(SpecError, match="not valid JSON"):
        Trace.from_json(text)


# ---------------------------------------------------------------------- fuzz
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _only_spec_errors(text: str | bytes) -> None:
    try:
        t = Trace.from_json(text)
    except SpecError as err:
        assert str(err)
        return
    again = Trace.from_json(t.to_json())  # whatever is accepted round-trips and renders
    assert again == t and again.to_json() == t.to_json()
    assert isinstance(t.table(), str)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_JSON)
def test_fuzz_random_json_values(value: Any):
    _only_spec_errors(json.dumps(value))
    _only_spec_errors(json.dumps({"schema": SCHEMA, "calls": value, "sizes": {}}))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for k, v in enumerate(node):
            out += _paths(v, (*prefix, k))
    return out


_PATHS = [p for p in _paths(REAL_DICT) if p]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_PATHS), st.one_of(st.just(...), _JSON)), min_size=1, max_size=3))
def test_fuzz_mutations_of_a_real_trace(edits: list[tuple[tuple, Any]]):
    doc = copy.deepcopy(REAL_DICT)
    for path, value in edits:
        node: Any = doc
        try:
            for part in path[:-1]:
                node = node[part]
            if value is ...:
                del node[path[-1]]
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced this path
    _only_spec_errors(json.dumps(doc))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(REAL_JSON)), st.text(max_size=4))
def test_fuzz_text_edits(at: int, insert: str):
    _only_spec_errors(REAL_JSON[:at] + insert + REAL_JSON[at + len(insert):])
    _only_spec_errors(REAL_JSON[:at].encode())
