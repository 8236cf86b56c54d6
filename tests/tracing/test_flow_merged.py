"""Merged and split dims under ops=True: a view that splits or merges neighbouring dims in
order is never scrambled_view, merged dims carry their factors, and the silent mistakes around them
are caught; each mistake has its correct twin that stays silent."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from trace_models import caught_and_silent

import shapeviz as sv
from shapeviz.tracing.flow import known_names


@contextmanager
def quiet() -> Iterator[None]:
    """Any ShapeWarning (or other warning) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ------------------------------------------------------------------ models of our own
class SkipGRU(nn.Module):
    """LSTNet's skip-GRU: conv (bs, c, T) -> last pt*skip steps -> (pt, bs*skip, c) -> GRU ->
    its state (1, bs*skip, h) viewed as (bs, skip*h)."""

    def __init__(self, emb: int = 4, c: int = 6, h: int = 5, skip: int = 3, pt: int = 4) -> None:
        super().__init__()
        self.c, self.h, self.skip, self.pt = c, h, skip, pt
        self.conv = nn.Conv1d(emb, c, 3, padding=1)
        self.gru = nn.GRU(c, c)
        self.gskip = nn.GRU(c, h)
        self.out = nn.Linear(c + skip * h, 2)
        self.seen: list[object] = []  # what the flow knows of the skip GRU's input and of its state's view

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (bs, T, emb)
        bs = x.size(0)
        c = torch.relu(self.conv(x.transpose(1, 2)))  # (bs, c, T)
        _, r = self.gru(c.permute(2, 0, 1).contiguous())  # (T, bs, c)
        s = c[:, :, -self.pt * self.skip:].contiguous()
        s = s.view(bs, self.c, self.pt, self.skip)
        s = s.permute(2, 0, 3, 1).contiguous()
        s = s.view(self.pt, bs * self.skip, self.c)  # (pt, bs*skip, c)
        self.seen.append(known_names(s))
        _, s = self.gskip(s)
        s = s.view(bs, self.skip * self.h)  # (1, bs*skip, h) -> (bs, skip*h): a split, in order
        self.seen.append(known_names(s))
        return self.out(torch.cat((r.squeeze(0), s), 1))


class DilatedRNN(nn.Module):
    """Time-major dilated GRUs: layer k sees (T/rate, rate*bs, ·) by a view, and a view gives (T, bs, ·) back."""

    def __init__(self, emb: int = 3, h: int = 5, rates: tuple[int, ...] = (1, 2), vocab: int = 6) -> None:
        super().__init__()
        self.rates = rates
        self.layers = nn.ModuleList([nn.GRU(emb if i == 0 else h, h) for i in range(len(rates))])
        self.out = nn.Linear(h, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, bs, emb)
        T, bs = x.shape[0], x.shape[1]
        for rate, rnn in zip(self.rates, self.layers):
            y, _ = rnn(x.contiguous().view(T // rate, rate * bs, x.shape[2]))  # (T/rate, rate*bs, ·)
            x = y.view(T, bs, -1)
        return self.out(x)  # (T, bs, vocab)


class InterleavedDilatedRNN(nn.Module):
    """Dilated GRUs as pytorch-dilated-rnn writes them: the layer input is a cat of the strided slices
    x[j::rate] (T/rate, rate*bs, ·); the output's blocks are stacked, transposed and viewed back."""

    def __init__(self, emb: int = 3, h: int = 5, rates: tuple[int, ...] = (1, 2), vocab: int = 6) -> None:
        super().__init__()
        self.rates = rates
        self.layers = nn.ModuleList([nn.GRU(emb if i == 0 else h, h) for i in range(len(rates))])
        self.out = nn.Linear(h, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, bs, emb)
        T, bs = x.shape[0], x.shape[1]
        for rate, rnn in zip(self.rates, self.layers):
            y, _ = rnn(torch.cat([x[j::rate] for j in range(rate)], 1))  # (T/rate, rate*bs, ·)
            blocks = [y[:, i * bs:(i + 1) * bs] for i in range(rate)]
            x = torch.stack(blocks).transpose(1, 0).contiguous().view(T, bs, -1)
        return self.out(x)


SKIP_SIZES = [  # bs, T, pt, skip, h: with coincidences
    (4, 12, 4, 3, 5),  # bs == pt, bs*skip == T
    (4, 16, 4, 4, 5),  # bs == pt == skip, bs*skip == T
    (3, 9, 3, 3, 3),  # bs == pt == skip == h, bs*skip == T
    (2, 8, 2, 2, 5),
    (5, 20, 4, 5, 5),  # skip == h == bs
    (6, 12, 2, 3, 5),
    (3, 7, 2, 3, 4),
]


@pytest.mark.parametrize(("bs", "T", "pt", "skip", "h"), SKIP_SIZES)
def test_skip_gru_is_silent_under_watch_and_checking(bs: int, T: int, pt: int, skip: int, h: int) -> None:
    model = SkipGRU(skip=skip, pt=pt, h=h)
    x = torch.randn(bs, T, 4)
    with quiet():
        with sv.watch(model, inputs="bs T", ops=True):
            assert model(x).shape == (bs, 2)
        with sv.checking(inputs="bs T", ops=True):
            assert model(x).shape == (bs, 2)


def test_skip_gru_batch_carries_its_factors() -> None:
    model = SkipGRU(skip=3)
    with sv.watch(model, inputs="bs T", ops=True), quiet():
        model(torch.randn(4, 12, 4))
    # the conv keeps bs, and T (a stride-1 "same" conv: its length is unchanged); the last pt*skip = 12 steps are
    # all of T, split into pt (T[3:12]) and skip (T[1:3]) parts: the GRU's batch is bs*skip, its time pt
    assert model.seen == [("T[3:12]", "bs*T[1:3]", None), ("bs", "T[1:3]*h")]
    model.seen.clear()
    with sv.watch(model, inputs="bs T", ops=True), quiet():
        model(torch.randn(4, 16, 4))  # the last 12 of 16 steps: a part of T, no longer named; the skip is counted
    assert model.seen == [(None, "bs*3", None), ("bs", "3*h")]


def test_skip_gru_trace_marks_no_line() -> None:
    trace = sv.trace(SkipGRU(), torch.randn(4, 12, 4), ops=True, inputs_dims="bs T emb")
    assert [c.flag for c in trace.calls if getattr(c, "flag", None)] == []


def test_a_merged_dim_carries_its_factors_and_a_split_gives_them_back() -> None:
    gru = nn.GRU(6, 5)
    x = sv.name(torch.randn(4, 6, 2, 3), "bs c pt skip")
    with sv.checking(ops=True), quiet():
        s = x.permute(2, 0, 3, 1).contiguous().view(2, 4 * 3, 6)
        assert known_names(s) == ("pt", "bs*skip", "c")
        _, h_n = gru(s)
        assert known_names(h_n) == ("layers*D", "bs*skip", "h")  # the GRU's batch is bs*skip, not bs
        assert known_names(h_n.view(4, 3 * 5)) == ("bs", "skip*h")
        assert known_names(h_n.view(4, 3, 5)) == ("bs", "skip", "h")


@pytest.mark.parametrize(("T", "bs", "rates"), [
    (8, 4, (1, 2)),  # T/rate == bs: the dilated input is (4, 8, ·), shaped like (bs, T, ·)
    (8, 2, (1, 2, 4)),  # T/4 == bs
    (12, 3, (1, 2, 4)),  # T/4 == bs
    (6, 3, (1, 2)),  # T/rate == bs
    (9, 3, (1, 3)),  # T/rate == bs == rate
    (8, 8, (1, 2)),  # T == bs
    (10, 3, (1, 2, 5)),
])
def test_dilated_rnn_is_silent_and_keeps_T_and_bs(T: int, bs: int, rates: tuple[int, ...]) -> None:
    model = DilatedRNN(rates=rates)
    x = torch.randn(T, bs, 3)
    with quiet():
        with sv.watch(model, inputs="T bs", ops=True):
            assert known_names(model(x)) == ("T", "bs", None)
        with sv.checking(inputs="T bs", ops=True):
            assert known_names(model(x)) == ("T", "bs", None)


@pytest.mark.parametrize(("T", "bs", "rates"), [(8, 4, (1, 2)), (8, 2, (1, 2, 4)), (9, 3, (1, 3)), (6, 6, (1, 2))])
def test_interleaved_dilated_rnn_is_silent_and_keeps_T_and_bs(T: int, bs: int, rates: tuple[int, ...]) -> None:
    model = InterleavedDilatedRNN(rates=rates)
    x = torch.randn(T, bs, 3)
    with quiet(), sv.watch(model, inputs="T bs", ops=True):
        assert known_names(model(x)) == ("T", "bs", None)


def test_strided_slices_and_blocks_are_named_and_put_back() -> None:
    x = sv.name(torch.randn(8, 4, 3), "T bs emb")
    with sv.checking(ops=True), quiet():
        assert known_names(x[1::2]) == ("T[2:8]", "bs", "emb")  # every other step: the outer part of T
        d = torch.cat([x[0::2], x[1::2]], 1)
        assert known_names(d) == ("T[2:8]", "T[1:2]*bs", "emb")
        assert known_names(torch.cat([x[1::2], x[0::2]], 1)) == ("T[2:8]", "2*bs", "emb")  # not in order: 2 pieces
        assert known_names(d[:, 4:8]) == ("T[2:8]", "bs", "emb")
        back = torch.stack([d[:, :4], d[:, 4:]]).transpose(1, 0).contiguous().view(8, 4, 3)
        assert known_names(back) == ("T", "bs", "emb")


@pytest.mark.parametrize("model_type", [DilatedRNN, InterleavedDilatedRNN])
@pytest.mark.parametrize(("T", "bs"), [(8, 4), (7, 3), (6, 6)])
def test_flatten_order_across_dilated_layers(T: int, bs: int, model_type: type[nn.Module]) -> None:
    model = model_type(rates=(1, 2) if T % 2 == 0 else (1, 7))
    x, Y = torch.randn(T, bs, 3), sv.name(torch.zeros(bs, T, dtype=torch.long), "bs T")
    with sv.watch(model, inputs="T bs", ops=True):
        logits = model(x).reshape(-1, 6)  # rows T*bs
        with pytest.raises(sv.ShapeError, match="flatten_order"):
            F.cross_entropy(logits, Y.reshape(-1))  # rows bs*T
        with quiet():
            F.cross_entropy(logits, Y.T.reshape(-1))  # the twin: rows T*bs


# ------------------------------------------------------------------ real scrambles still raise
@pytest.mark.parametrize(("bs", "T"), [(4, 7), (4, 8), (8, 4), (3, 5)])
def test_view_in_place_of_transpose_still_raises(bs: int, T: int) -> None:
    rnn = nn.GRU(3, 5)
    e = sv.name(torch.randn(bs, T, 3), "bs T emb")
    with sv.checking(ops=True), pytest.raises(sv.ShapeError, match="scrambled_view") as info:
        rnn(e.view(T, bs, -1))  # 7 steps into rows of 4: at the view; 8 into 4: where the GRU reads it as T
    assert info.value.code == "scrambled_view"
    assert info.value.hints[0].startswith("e.transpose(0, 1)")
    with sv.checking(ops=True), quiet():
        rnn(e.transpose(0, 1))  # the twin


def test_scrambled_view_is_marked_in_the_trace() -> None:
    class Scramble(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(3, 5)

        def forward(self, e: torch.Tensor) -> torch.Tensor:
            return self.rnn(e.view(7, 4, -1))[0]

    trace = sv.trace(Scramble(), torch.randn(4, 7, 3), ops=True, inputs_dims="bs T emb")
    assert [c.flag.split(":")[0] for c in trace.calls if getattr(c, "flag", None)] == ["scrambled_view"]


# ------------------------------------------------------------------ item 2: silent mistakes caught
class AttnDecoder(nn.Module):
    """Encoder GRU, a GRUCell decoder loop with attention and an attention Linear per step."""

    def __init__(self, wrong: bool, emb: int = 4, h: int = 6) -> None:
        super().__init__()
        self.wrong = wrong
        self.enc = nn.GRU(emb, h)
        self.cell = nn.GRUCell(emb, h)
        self.attn = nn.Linear(2 * h, h)

    def forward(self, src: torch.Tensor, trg: torch.Tensor) -> torch.Tensor:  # (T, bs, emb) each
        enc, h_n = self.enc(src)
        h, outs = h_n[0], []
        for t in range(trg.size(0)):
            h = self.cell(trg[t], h)
            scores = torch.bmm(enc.transpose(0, 1), h.unsqueeze(2)).squeeze(2)  # (bs, T)
            ctx = torch.bmm(F.softmax(scores, 1).unsqueeze(1), enc.transpose(0, 1)).squeeze(1)  # (bs, h)
            outs.append(torch.tanh(self.attn(torch.cat((h, ctx), 1))))  # (bs, h)
        bsz, seqlen = trg.size(1), trg.size(0)
        if self.wrong:
            return torch.cat(outs).view(bsz, seqlen, -1)  # rows are steps*bs, time-major: scrambled
        return torch.stack(outs, 1)  # (bs, steps, h)


@pytest.mark.parametrize(("steps", "bs"), [(7, 4), (5, 3), (3, 5)])
def test_cat_of_time_major_steps_viewed_batch_major_raises(steps: int, bs: int) -> None:
    src, trg = torch.randn(5, bs, 4), torch.randn(steps, bs, 4)
    with pytest.raises(sv.ShapeError, match="scrambled_view") as info:
        model = AttnDecoder(wrong=True)
        with sv.watch(model, inputs="T bs emb", ops=True):
            model(src, trg)
    assert "relabels" in str(info.value) and "bs" in str(info.value)
    model = AttnDecoder(wrong=False)
    with sv.watch(model, inputs="T bs emb", ops=True), quiet():
        assert known_names(model(src, trg))[0] == "bs"  # the names survive the attention Linear


@pytest.mark.parametrize(("T", "bs", "h"), [(5, 3, 4), (4, 4, 4), (6, 2, 3)])
def test_bidirectional_directions_summed_as_interleaved_pairs_raise(T: int, bs: int, h: int) -> None:
    rnn = nn.GRU(3, h, bidirectional=True)
    x = sv.name(torch.randn(T, bs, 3), "T bs emb")
    with sv.checking(ops=True):
        y, _ = rnn(x)  # (T, bs, D*h): the layout is (…, D, h)
        with pytest.raises(sv.ShapeError, match="scrambled_view") as info:
            y.view(T, bs, -1, 2).sum(3)
        assert "relabels D, h" in str(info.value)
        with quiet():
            z = y.view(T, bs, 2, -1).sum(2)  # the twin
        assert known_names(z) == ("T", "bs", "h")


@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_output_last_after_unsorted_packing_warns_padded_last(enforce_sorted: bool) -> None:
    rnn = nn.GRU(3, 5, batch_first=True)
    x = sv.name(torch.randn(3, 6, 3), "bs T emb")
    lengths = [6, 4, 2] if enforce_sorted else [4, 6, 2]
    with sv.checking(ops=True):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=enforce_sorted)
        y, h_n = rnn(packed)
        out, _ = pad_packed_sequence(y, batch_first=True)  # unsorted by index_select when not enforce_sorted
        with pytest.warns(sv.ShapeWarning, match="padded_last"):
            out[:, -1]
        with quiet():
            h_n[-1]  # the twin: each sequence's real last step


# ------------------------------------------------------------------ known_names
def test_known_names_is_none_without_a_flow_and_in_other_threads() -> None:
    x = sv.name(torch.randn(4, 7, 3), "bs T emb")
    assert known_names(x) is None
    seen: list[object] = []
    with sv.checking(ops=True):
        assert known_names(x) == ("bs", "T", "emb")
        assert known_names(x.transpose(0, 1)) == ("T", "bs", "emb")
        assert known_names(torch.randn(2)) is None
        worker = threading.Thread(target=lambda: seen.append(known_names(x)))
        worker.start()
        worker.join()
    assert seen == [None]  # a flow is per thread
    assert known_names(x) is None


def test_known_names_follows_a_watch_handle() -> None:
    model = nn.GRU(3, 5)
    x = sv.name(torch.randn(7, 4, 3), "T bs emb")
    handle = sv.watch(model, ops=True)
    try:
        y, _ = model(x)
        assert known_names(y) == ("T", "bs", "D*h")
    finally:
        handle.remove()
    assert known_names(y) is None


# ------------------------------------------------------------------ the trace's marks (sv.trace(ops=True))
class ViewIntoGRU(nn.Module):
    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape
        self.rnn = nn.GRU(3, 5)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.rnn(e.view(*self.shape))[0]


@pytest.mark.parametrize(("bs", "T"), [(4, 8), (8, 4), (4, 7)])
def test_trace_marks_a_scrambled_view_also_when_sizes_divide(bs: int, T: int) -> None:
    trace = sv.trace(ViewIntoGRU((T, bs, -1)), torch.randn(bs, T, 3), ops=True, inputs_dims="bs T emb")
    assert [c.flag.split(":")[0] for c in trace.calls if getattr(c, "flag", None)] == ["scrambled_view"]


def test_trace_of_a_time_major_dilation_marks_nothing() -> None:
    trace = sv.trace(DilatedRNN(rates=(1, 2)), torch.randn(8, 4, 3), ops=True, inputs_dims="T bs emb")
    assert [c.flag for c in trace.calls if getattr(c, "flag", None)] == []


class BiSum(nn.Module):
    def __init__(self, wrong: bool) -> None:
        super().__init__()
        self.wrong = wrong
        self.rnn = nn.GRU(3, 4, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rnn(x)[0]
        return y.view(5, 3, -1, 2).sum(3) if self.wrong else y.view(5, 3, 2, -1).sum(2)


def test_trace_marks_the_interleaved_bidirectional_sum_and_names_the_right_one() -> None:
    wrong = sv.trace(BiSum(True), torch.randn(5, 3, 3), ops=True, inputs_dims="T bs emb")
    assert [c.flag for c in wrong.calls if getattr(c, "flag", None)] == [
        "scrambled_view: view(5, 3, -1, 2) of y (T, bs, D*h) relabels D, h without moving data"]
    right = sv.trace(BiSum(False), torch.randn(5, 3, 3), ops=True, inputs_dims="T bs emb")
    view = right.find(type="view")[0]
    assert view.flag is None or not view.flag
    assert view.outputs[0].format() == "(T=5, bs=3, D=2, h=4)"


def test_a_decoder_of_another_length_keeps_its_time_axis_for_flatten_order() -> None:
    enc, dec, out = nn.GRU(3, 5), nn.GRU(3, 5), nn.Linear(5, 6)
    src, trg = torch.randn(7, 4, 3), torch.randn(5, 4, 3)  # 7 source steps, 5 target steps
    src = sv.name(src, "T bs emb")  # bare layers' inputs: named by sv.name (inputs= never names them)
    Y = sv.name(torch.zeros(4, 5, dtype=torch.long), "bs T")
    with sv.checking(ops=True):
        _, h = enc(src)
        y, _ = dec(trg, h)
        logits = out(y).view(-1, 6)  # rows T*bs: the decoder's own steps, time-major
        with pytest.raises(sv.ShapeError, match="flatten_order"):
            F.cross_entropy(logits, Y.reshape(-1))
        with quiet():
            F.cross_entropy(logits, Y.T.reshape(-1))


def test_inputs_naming_fewer_dims_names_the_leading_ones() -> None:
    seen: list[object] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(3, 5, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(known_names(x))
            return self.rnn(x)[0]

    model = Probe()
    with sv.watch(model, inputs="bs T", ops=True), quiet():  # as the runtime reads it: the leading dims
        model(torch.randn(4, 7, 3))
    assert seen == [("bs", "T", None)]


def test_a_beams_batch_keeps_its_order_bs_times_k() -> None:
    gru, cell = nn.GRU(6, 5), nn.GRUCell(6, 5)
    h = sv.name(torch.randn(1, 4, 5), "one bs h")
    with sv.checking(ops=True):
        with quiet():
            tiled = h.repeat(1, 3, 1)  # (1, 3*bs, h): the copy index outer
            assert known_names(tiled) == ("one", "3*bs", "h")
            assert known_names(h.unsqueeze(2).expand(-1, -1, 3, -1).reshape(1, 12, 5)) == (None, "bs*3", "h")
            beams = h.repeat_interleave(3, dim=1)  # (1, bs*k, h): each sequence's k beams together
            _, h_n = gru(torch.randn(1, 12, 6), beams)  # the state says what the batch is
            assert known_names(h_n) == ("layers*D", "bs*3", "h")
            assert known_names(cell(torch.randn(12, 6), beams[0])) == ("bs*3", "h")
            assert known_names(h_n.view(4, 3, 5)) == ("bs", "3", "h")  # the split gives them back
        with pytest.raises(sv.ShapeError, match="scrambled_view"):
            h_n.view(3, 4, 5)  # (k, bs, h) of bs*k rows: beams of different sequences mixed


class Pyramid(nn.Module):
    """A listener's pyramidal step: halve T by joining neighbouring frames. Right: batch-first
    ``(bs, T, d).reshape(bs, T/2, 2d)``; wrong: seq-first ``(T, bs, d).view(T/2, bs, 2d)``, which joins
    neighbouring sequences of the batch instead (with an even bs the view splits bs without raising)."""

    def __init__(self, wrong: bool) -> None:
        super().__init__()
        self.wrong = wrong
        self.lstm = nn.LSTM(12, 5, batch_first=not wrong)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (bs, T, d)
        bs, T, d = x.shape
        if self.wrong:
            return self.lstm(x.transpose(0, 1).contiguous().view(T // 2, bs, 2 * d))[0]
        return self.lstm(x.reshape(bs, T // 2, 2 * d))[0]


@pytest.mark.parametrize("bs", [3, 4])
def test_a_view_that_tears_the_batch_into_time_and_features_is_scrambled(bs: int) -> None:
    x = torch.randn(bs, 8, 6)
    caught_and_silent(Pyramid(wrong=True), Pyramid(wrong=False), x, match="scrambled_view")
    t = sv.trace(Pyramid(wrong=True), x, ops=True, inputs_dims="bs T")
    [view] = t.find(type="view")
    assert view.outputs[0].names is None or "bs" not in view.outputs[0].names, view.outputs[0]


class ConvThenGRU(nn.Module):
    """LSTNet's first stage: a Conv1d over ``(bs, m, T)``, then a seq-first GRU over its ``(T', bs, C)``;
    ``wrong`` writes ``c.view(-1, bs, C)`` where ``c.permute(2, 0, 1)`` was meant."""

    def __init__(self, wrong: bool) -> None:
        super().__init__()
        self.wrong = wrong
        self.conv, self.gru = nn.Conv1d(5, 6, 3), nn.GRU(6, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (bs, T, m)
        c = torch.relu(self.conv(x.transpose(1, 2)))  # (bs, C, T')
        return self.gru(c.view(-1, x.shape[0], c.shape[1]) if self.wrong else c.permute(2, 0, 1))[0]


def test_a_view_that_moves_the_batch_into_time_is_scrambled_with_only_bs_named() -> None:
    """Only bs is named after the conv (its channels and steps are not): the view puts all of bs and 3 rows of
    the channels into the GRU's time axis, which the GRU then reads as T. The permute stays silent."""
    x = torch.randn(4, 14, 5)
    caught_and_silent(ConvThenGRU(wrong=True), ConvThenGRU(wrong=False), x, match=r"scrambled_view[\s\S]*permute")
