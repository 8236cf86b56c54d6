"""Data flow in traces: which recurrent call (and which of its results) each tensor a call receives
was computed from, packed batch sizes, and tracing any callable (bound methods, closures, partials)."""

from __future__ import annotations

import functools
import json
from itertools import pairwise

import pytest
import torch
import torch.nn as nn

import shapeviz as sv
from shapeviz._errors import SpecError
from shapeviz.gallery.models import Captioner, PackedLSTM, Seq2SeqGRU, StackedCells
from shapeviz.render.text import notes
from shapeviz.tracing.records import Trace

SRC = torch.randint(0, 20, (7, 3), generator=torch.Generator().manual_seed(1))  # (T_src=7, bs=3)
TRG = torch.randint(0, 20, (5, 3), generator=torch.Generator().manual_seed(2))  # (T_trg=5, bs=3)


def _calls(t: Trace, path: str) -> list:
    return t.find(path=path)


@pytest.mark.parametrize("ops", [False, True])
def test_greedy_decoder_input_is_computed_from_the_previous_call(ops: bool) -> None:
    t = sv.trace(Seq2SeqGRU().greedy, SRC, 5, ops=ops)
    [enc] = _calls(t, "encoder")
    dec = _calls(t, "decoder")
    assert len(dec) == 5
    h_0 = dec[0].inputs[1]
    assert h_0.role == "h_0" and h_0.flow == ((enc.index, 1),) and h_0.produced_by == enc.index  # the very h_n
    for prev, call in pairwise(dec):
        x = call.inputs[0]
        assert x.role == "input" and (prev.index, 0) in x.flow  # through Linear, argmax, Embedding
        assert call.inputs[1].flow == ((prev.index, 1),)  # the state: the previous call's h_n
    assert dec[0].inputs[0].flow == ()  # <sos> comes from torch.zeros, not from a call


def test_teacher_forcing_inputs_come_from_the_data() -> None:
    t = sv.trace(Seq2SeqGRU(), SRC, TRG)
    dec = _calls(t, "decoder")
    assert len(dec) == 5 and all(c.inputs[0].flow == () for c in dec)
    assert all(c.inputs[1].flow for c in dec)  # the state still flows call to call


def test_stacked_cells_hand_h_to_the_next_cell_each_step() -> None:
    t = sv.trace(StackedCells(hidden=12), torch.randn(3, 8))
    one, two = _calls(t, "lstm1"), _calls(t, "lstm2")
    assert len(one) == len(two) == 8
    for a, b in zip(one, two):
        assert b.inputs[0].flow == ((a.index, 0),)  # lstm2's input is lstm1's h_1 of the same step
        assert b.inputs[0].produced_by == a.index


def test_packed_batch_sizes_are_recorded_as_runs() -> None:
    t = sv.trace(PackedLSTM(4, 6), torch.randn(5, 3, 4), torch.tensor([5, 3, 2]))
    [lstm] = _calls(t, "lstm")
    [sizes] = [i for i in lstm.inputs if i.packed == "batch_sizes"]
    assert sizes.batch_sizes == ((3, 2), (2, 1), (1, 2))  # [3, 3, 2, 1, 1]
    assert sizes.shape == (5,)


def test_flow_sites_and_batch_sizes_round_trip_through_json() -> None:
    for t in (sv.trace(Seq2SeqGRU().greedy, SRC, 4), sv.trace(PackedLSTM(4, 6), torch.randn(5, 3, 4),
                                                                torch.tensor([5, 3, 2]))):
        back = Trace.from_json(t.to_json())
        assert back == t
        assert back.unroll().source == t.unroll().source
    dec = _calls(sv.trace(Seq2SeqGRU().greedy, SRC, 2), "decoder")
    assert dec[0].site.startswith("models.py:") and "self.decoder(" in dec[0].code


@pytest.mark.parametrize(("value", "match"), [
    ([[1]], r"calls\[0\]\.inputs\[0\]\.flow\[0\]: expected a pair of ints"),
    ([[-1, 0]], r"flow\[0\]: expected a pair of ints from 0"),
    ("x", r"flow: expected"),
])
def test_bad_flow_in_json_is_a_spec_error_saying_where(value: object, match: str) -> None:
    doc = json.loads(sv.trace(nn.GRU(4, 8), torch.zeros(5, 2, 4)).to_json())
    doc["calls"][0]["inputs"][0]["flow"] = value
    with pytest.raises(SpecError, match=match):
        Trace.from_json(json.dumps(doc))


def test_traces_keep_only_indices_never_tensors() -> None:
    t = sv.trace(Seq2SeqGRU().greedy, SRC, 3)
    for c in t.calls:
        for i in c.inputs + c.outputs:
            assert all(type(a) is int and type(b) is int for a, b in i.flow)


# ------------------------------------------------------------------ any callable
def test_bound_method_hooks_the_modules_of_self() -> None:
    model = Captioner()
    t = sv.trace(model.sample, torch.randn(3, 32), 4)
    assert t.model == "sample"
    assert [c.path for c in t.find(type="LSTM")] == ["lstm"] * 4
    assert not model.lstm._forward_hooks and not model.lstm._forward_pre_hooks  # removed again


def test_closure_partial_default_and_global_modules_are_hooked() -> None:
    gru = nn.GRU(4, 8)

    def closure(x: torch.Tensor) -> torch.Tensor:
        return gru(x)[0]

    def with_default(x: torch.Tensor, layer: nn.Module = gru) -> torch.Tensor:
        return layer(x)[0]

    def takes(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return layer(x)[0]

    x = torch.zeros(5, 2, 4)
    for fn, path in ((closure, "gru"), (with_default, "layer"), (functools.partial(takes, gru), "layer"),
                     (_uses_global, "GLOBAL_RNN")):
        t = sv.trace(fn, x)
        assert [c.path for c in t.find(type="GRU")] == [path], fn
    assert [c.path for c in sv.trace(takes, gru, x).find(type="GRU")] == ["layer"]  # a module passed in
    assert not gru._forward_hooks


GLOBAL_RNN = nn.GRU(4, 8)


def _uses_global(x: torch.Tensor) -> torch.Tensor:
    return GLOBAL_RNN(x)[0]


def test_a_callable_without_modules_is_a_spec_error_that_says_what_was_searched() -> None:
    with pytest.raises(SpecError, match=r"found no nn.Module.*bound method's self.*closure variables.*"
                                        r"default arguments.*ops=True"):
        sv.trace(lambda x: x * 2, torch.zeros(2))
    assert len(sv.trace(lambda x: x * 2, torch.zeros(2), ops=True).calls) == 2  # ops=True: the root and its op


def test_explain_does_not_claim_output_last_is_h_n_for_packed_output() -> None:
    text = " ".join(notes(sv.conventions(nn.LSTM(4, 6)), T=5, bs=3))
    assert "not for output padded from a packed batch" in text and "lengths[i]-1" in text
