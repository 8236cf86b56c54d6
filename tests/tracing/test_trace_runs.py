"""Repeated steps stored once (``shapeviz.tracing.runs``) and what a trace costs while it records: the calls read
back are the ones recorded, field for field; files store runs (schema ``shapeviz.trace/2``) and older files (``/1``)
still read; the collector's threshold and the copies' ``__getstate__`` are back after every trace; a trace leaves
no reference cycle behind."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import shapeviz as sv
from shapeviz import SpecError
from shapeviz.gallery.registry import EXAMPLES
from shapeviz.tracing import runs as runs_mod
from shapeviz.tracing.json_reader import MAX_CALLS
from shapeviz.tracing.records import SCHEMA, SCHEMA_1, Call, CallKind, TensorInfo, Trace
from shapeviz.tracing.runs import Calls, compress, expand


class _Scratch(nn.Module):
    """A from-scratch RNN loop: four ops a step, the state handed from each step to the next."""

    def __init__(self, emb: int = 4, hidden: int = 6) -> None:
        super().__init__()
        self.W_xh = nn.Parameter(torch.randn(emb, hidden))
        self.W_hh = nn.Parameter(torch.randn(hidden, hidden))

    def forward(self, x: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        for X in x:
            H = torch.tanh(X @ self.W_xh + H @ self.W_hh)
        return H


def _recorded(monkeypatch: pytest.MonkeyPatch) -> list[list[Call]]:
    """The lists of calls handed to compress (what the recorder made), as they were."""
    seen: list[list[Call]] = []
    real = runs_mod.compress

    def spy(calls: list[Call]) -> Any:
        seen.append(list(calls))
        return real(calls)

    monkeypatch.setattr(runs_mod, "compress", spy)
    return seen


# ---------------------------------------------------------------------- the calls read back are the ones recorded
@pytest.mark.parametrize("name", [n for n, ex in EXAMPLES.items() if not ex.is_mistake])
def test_every_gallery_trace_reads_back_call_for_call(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    built = EXAMPLES[name].build()
    seen = _recorded(monkeypatch)
    with sv.dims(**built.sizes):
        t = sv.trace(built.model, *built.inputs, ops=True, inputs_dims=built.inputs_dims)
    assert list(t.calls) == seen[-1]  # every field of every call and record, links included
    assert [c.index for c in t.calls] == list(range(len(t.calls)))
    assert all(t.calls[i] == c for i, c in enumerate(seen[-1]))  # reading one call at a time too
    text = t.to_json()  # (JSON keeps a declared recurrent class's conventions, not the class: compared as text)
    assert Trace.from_json(text).to_json() == text
    assert Trace.from_json(json.dumps(t.to_dict())).to_json() == text  # the older layout, every call listed


def test_a_long_loop_is_one_step_stored_with_its_count() -> None:
    T = 300
    t = sv.trace(_Scratch(), torch.zeros(T, 2, 4), torch.zeros(2, 6), ops=True)
    assert len(t.calls) == 4 * T + 2  # the model, unbind, then four ops a step
    (start, length, count), = t.calls.runs()
    assert (length, start + length * count) == (4, len(t.calls))  # the loop's steps from the second on
    assert len(t.calls.items()) <= 2 + length + 1  # what is kept: a few calls and one run, not 1,200 calls
    tanhs = [c for c in t.calls if c.type == "tanh"]
    matmuls = [c for c in t.calls if c.type == "matmul" and c.inputs[0].label == "H"]
    assert [m.inputs[0].produced_by for m in matmuls[1:]] == [c.index for c in tanhs[:-1]]  # each step's h
    assert all(m.inputs[1].produced_by is None and m.inputs[1].label == "self.W_hh" for m in matmuls)
    assert t.calls[0].outputs[0].produced_by == tanhs[-1].index


def test_the_table_of_a_long_loop_still_groups_its_steps() -> None:
    t = sv.trace(_Scratch(), torch.zeros(50, 2, 4), torch.zeros(2, 6), ops=True)
    assert "× 50" in t.table() or "× T" in t.table()


def test_calls_compare_with_lists_and_slices() -> None:
    t = sv.trace(_Scratch(), torch.zeros(5, 2, 4), torch.zeros(2, 6), ops=True)
    calls = list(t.calls)
    assert t.calls == calls and calls == t.calls and t.calls[-3:] == calls[-3:] and t.calls[-1] == calls[-1]
    with pytest.raises(IndexError):
        t.calls[len(calls)]
    assert Trace(calls=calls, model=t.model, ops=True, sizes=t.sizes) == t


# ---------------------------------------------------------------------- found exactly, on any sequence of calls
def _synthetic(kinds: list[int], links: list[int], flips: list[int]) -> list[Call]:
    """Calls of a few kinds, each reading one earlier call's result (``links``: how far back, 0 for none), some
    with a name that differs (``flips``)."""
    calls = []
    for i, (k, back, flip) in enumerate(zip(kinds, links, flips)):
        produced = i - back if 0 < back <= i else None
        info = TensorInfo((2, 3), ("bs", "h") if not flip else ("bs", "h?"), produced_by=produced,
                          flow=((produced, 0),) if produced is not None and k == 2 else ())
        calls.append(Call(i, "", "op" + str(k), CallKind.OP, inputs=[info], outputs=[TensorInfo((2, 3))],
                          parent=None if k else (i - 1 if i else None)))
    return calls


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(0, 6)), max_size=60))
def test_compressed_calls_expand_to_the_same_calls(spec: list[tuple[int, int, int]]) -> None:
    calls = _synthetic([k for k, _, _ in spec], [b for _, b, _ in spec], [int(f == 0) for _, _, f in spec])
    items = compress(calls)
    assert expand(items) == calls
    assert list(Calls(calls)) == calls and Calls(calls) == calls


def test_a_step_whose_names_differ_ends_the_run() -> None:
    calls = _synthetic([1] * 8, [1] * 8, [0, 0, 0, 0, 1, 0, 0, 0])
    stored = Calls(calls)
    assert list(stored) == calls
    assert all(start + length * count <= 4 or start > 4 for start, length, count in stored.runs())


# ---------------------------------------------------------------------- files
def _loop_trace() -> Trace:
    return sv.trace(_Scratch(), torch.zeros(6, 2, 4), torch.zeros(2, 6), ops=True)


def test_files_store_each_run_once_and_older_files_still_read() -> None:
    t = _loop_trace()
    doc = json.loads(t.to_json())
    assert doc["schema"] == SCHEMA and doc["runs"] == [list(r) for r in t.calls.runs()]
    listed = sum(len(item[0]) if isinstance(item, tuple) else 1 for item in t.calls.items())
    assert len(doc["calls"]) == listed == 10 < len(t.calls) == 26  # model, unbind, the first step, the second
    old = t.to_dict()
    assert old["schema"] == SCHEMA_1 and len(old["calls"]) == len(t.calls) and "runs" not in old
    assert Trace.from_json(json.dumps(old)) == t == Trace.from_json(t.to_json())
    assert Trace.from_json(t.to_json()).to_json() == t.to_json()


def _doc_with(**changes: Any) -> str:
    doc = json.loads(_loop_trace().to_json())
    doc.update(changes)
    return json.dumps(doc)


@pytest.mark.parametrize(("runs", "match"), [
    ([[6, 4, 5], [7, 1, 2]], r"runs\[1\]: expected a run that starts at a listed call after the one before"),
    ([[3, 4, 5]], r"calls\[7\]\.index: expected 23 \(calls are listed in order, each run of repeated steps once"),
    ([[6, 4, 1]], r"runs\[0\]: expected a length from 1 .* and a count from 2"),
    ([[6, 40, 2]], r"runs\[0\]: expected a length from 1 to the calls listed"),
    ([[6, 4, MAX_CALLS]], r"runs: at most 1,000,000 calls in all"),
    ([[6, 4, 5], [50, 1, 2]], r"runs\[1\]: expected a run that starts at a listed call"),
    ([["6", 4, 5]], r"runs\[0\]: expected \[start, length, count\]"),
])
def test_crafted_runs_are_refused_saying_where(runs: list, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        Trace.from_json(_doc_with(runs=runs))


def test_a_listed_call_out_of_place_is_refused() -> None:
    doc = json.loads(_loop_trace().to_json())
    doc["calls"][-1]["index"] = 7  # the last listed call stands after the run: its index says where
    with pytest.raises(SpecError, match=r"calls\[\d+\]\.index: expected \d+ \(calls are listed in order, each run"):
        Trace.from_json(json.dumps(doc))


def test_a_run_that_links_outside_the_trace_is_refused() -> None:
    doc = json.loads(_loop_trace().to_json())
    start, length, count = doc["runs"][0]
    n = start + length * count
    stored = next(c for c in doc["calls"] if c["index"] == start + 1)  # H @ W_hh of the first stored step
    stored["inputs"][0]["produced_by"] = n - 2  # moves with the steps: the last step's is past the end
    with pytest.raises(SpecError, match=r"produced_by: expected a call index below"):
        Trace.from_json(json.dumps(doc))


# ---------------------------------------------------------------------- what a trace leaves behind
def test_the_collector_threshold_is_back_after_a_trace_and_after_one_that_raised() -> None:
    before = gc.get_threshold()
    sv.trace(_Scratch(), torch.zeros(3, 2, 4), torch.zeros(2, 6), ops=True)
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError):
        sv.trace(_Scratch(), torch.zeros(3, 2, 5), torch.zeros(2, 6), ops=True)
    assert gc.get_threshold() == before


def test_a_threshold_the_forward_sets_is_left_as_it_set_it() -> None:
    before = gc.get_threshold()

    def forward(x: torch.Tensor) -> torch.Tensor:
        gc.set_threshold(1234, before[1], before[2])
        return x * 2

    try:
        sv.trace(forward, torch.zeros(2), ops=True)
        assert gc.get_threshold() == (1234, before[1], before[2])
    finally:
        gc.set_threshold(*before)


def test_a_trace_leaves_no_cycle_to_collect() -> None:
    """The recorder and its op mode referred to each other: every record lived until a collection."""
    model, x, h = _Scratch(), torch.zeros(20, 2, 4), torch.zeros(2, 6)
    sv.trace(model, x, h, ops=True)
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        before = sum(type(o) in (Call, TensorInfo) for o in gc.get_objects())
        t = sv.trace(model, x, h, ops=True)
        del t
        after = sum(type(o) in (Call, TensorInfo) for o in gc.get_objects())
    finally:
        if was:
            gc.enable()
    assert after <= before


def test_a_trace_of_torch_recurrent_modules_alone_wraps_no_getstate() -> None:
    """Copies made during a trace carry no hooks: __getstate__ is wrapped only while some module has hooks (an
    nn.LSTM alone is recorded through its class's forward, with none)."""
    lstm = nn.LSTM(4, 8)
    seen = []
    lstm.register_forward_pre_hook(lambda m, a: seen.append(nn.Module.__dict__["__getstate__"]))
    torch_own = nn.Module.__dict__["__getstate__"]
    sv.trace(lstm, torch.zeros(5, 2, 4))
    assert seen == [torch_own]
    seen.clear()
    sv.trace(nn.Sequential(lstm), torch.zeros(5, 2, 4))
    assert seen and seen[0] is not torch_own  # a Sequential's hooks: copies leave them out
    assert nn.Module.__dict__["__getstate__"] is torch_own
