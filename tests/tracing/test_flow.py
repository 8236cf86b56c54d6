"""Flow checks (ops=True): a corpus of real-world silent mistakes around the recurrent call, each
with its clean twin, through sv.watch(model, ops=True) and sv.checking(ops=True)."""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from trace_models import caught_and_silent

import shapeviz as sv
from shapeviz.tracing.flow import FlowMode

VOCAB, BS, T = 28, 4, 7


def tokens() -> torch.Tensor:
    return torch.arange(BS * T).reshape(BS, T) % VOCAB


class EmbedGRU(nn.Module):
    """Embedding -> seq-first GRU -> Linear; ``scramble`` uses view where a transpose is meant."""

    def __init__(self, scramble: bool = False) -> None:
        super().__init__()
        self.scramble = scramble
        self.emb = nn.Embedding(VOCAB, 8)
        self.rnn = nn.GRU(8, 16)
        self.out = nn.Linear(16, VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.emb(x)  # (bs, T, emb)
        e = e.view(T, BS, -1) if self.scramble else e.transpose(0, 1)  # the mistake vs (T, bs, emb)
        y, _ = self.rnn(e)
        return self.out(y).reshape(-1, VOCAB)  # (T*bs, vocab)


@contextlib.contextmanager
def no_warnings() -> Iterator[None]:
    """Inside: any ShapeWarning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", sv.ShapeWarning)
        yield


# ------------------------------------------------------------------ scrambled_view
def test_view_in_place_of_transpose_raises_with_the_transpose_as_hint() -> None:
    model = EmbedGRU(scramble=True)
    with pytest.raises(sv.ShapeError, match="scrambled_view") as info, sv.watch(model, inputs="bs T", ops=True):
        model(tokens())
    err = info.value
    assert err.code == "scrambled_view" and err.actual == (T, BS, 8)
    assert "relabels bs, T without moving data" in str(err)
    assert err.hints == ["e.transpose(0, 1)  # (bs=4, T=7, 8) -> (T, bs, 8): moves the data"]


def test_transpose_twin_passes() -> None:
    model = EmbedGRU()
    with sv.watch(model, inputs="bs T", ops=True):
        assert model(tokens()).shape == (T * BS, VOCAB)


def test_reshape_scrambles_too_and_permute_twin_passes() -> None:
    x = sv.name(torch.randn(BS, T, 3), "bs T emb")
    with sv.checking(ops=True):
        with pytest.raises(sv.ShapeError, match="scrambled_view"):
            x.reshape(T, BS, 3)
        assert x.permute(1, 0, 2).reshape(T * BS, 3).shape == (T * BS, 3)


class _Windows(nn.Module):
    """Windows of 4 steps (stride 2) of each sequence, merged into the batch: ``(bs*nW, W, feat)``."""

    def __init__(self, batch_first: bool, fixed: bool = False) -> None:
        super().__init__()
        self.fixed = fixed
        self.gru = nn.GRU(3, 5, batch_first=batch_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (bs, T, feat)
        win = x.unfold(1, 4, 2)  # (bs, nW, feat, W)
        bs, n = win.shape[:2]
        y = win.permute(0, 1, 3, 2).reshape(bs * n, 4, -1)  # (bs*nW, W, feat): whole dims merged, in order
        return self.gru(y.transpose(0, 1) if self.fixed else y)[1][-1]


@pytest.mark.parametrize("bs", [3, 4])
def test_windows_merged_into_the_batch_for_a_seq_first_layer_are_a_swap_not_a_scrambled_view(bs: int) -> None:
    """The reshape merges whole dims (bs, nW) in order: it relabels nothing. Fed to a layer with
    ``batch_first=False``, its time axis is that batch: ``batch_first_swap`` at the layer, with the transpose."""
    x = torch.randn(bs, 10, 3)
    model = _Windows(batch_first=False)
    with pytest.raises(sv.ShapeError) as info, sv.watch(model, inputs="bs T", ops=True):
        model(x)
    err = info.value
    assert err.code == "batch_first_swap" and "gru" in str(err) and err.actual == (bs * 4, 4, 3)
    assert err.hints[0].startswith("x = x.transpose(0, 1)")
    for fixed in (_Windows(batch_first=True), _Windows(batch_first=False, fixed=True)):
        with sv.watch(fixed, inputs="bs T", ops=True):
            assert fixed(x).shape == (bs * 4, 5)
    t = sv.trace(model, x, inputs_dims="bs T feat", ops=True)
    assert "scrambled_view" not in t.table()


def test_without_ops_nothing_is_tracked() -> None:
    model = EmbedGRU(scramble=True)
    with sv.watch(model, inputs="bs T"):
        model(tokens())  # silently wrong, as before: ops=False costs nothing and checks no ops
    assert not any(isinstance(m, FlowMode) for m in torch.overrides._get_current_function_mode_stack())


# ------------------------------------------------------------------ flatten_order: the seeds' char-RNN loss
def char_rnn_loss(model: nn.Module, Y: torch.Tensor, right: bool) -> torch.Tensor:
    logits = model(tokens())  # (T*bs, vocab): the seeds' d2l RNN flattens time-major
    y = Y.T.reshape(-1) if right else Y.reshape(-1)  # d2l writes Y.T.reshape(-1)
    return F.cross_entropy(logits, y.long())


def test_targets_flattened_bs_major_against_time_major_logits_raise() -> None:
    model = EmbedGRU()
    Y = sv.name(tokens(), "bs T")
    with pytest.raises(sv.ShapeError, match="flatten_order") as info, sv.watch(model, inputs="bs T", ops=True):
        char_rnn_loss(model, Y, right=False)
    assert "logits' rows are T*bs but the targets' rows are bs*T" in str(info.value)
    assert info.value.hints[0].startswith("Y.T.reshape(-1)")


def test_targets_flattened_like_the_logits_pass() -> None:
    model = EmbedGRU()
    Y = sv.name(tokens(), "bs T")
    with sv.watch(model, inputs="bs T", ops=True):
        assert char_rnn_loss(model, Y, right=True).dim() == 0


def test_nn_cross_entropy_loss_and_nll_loss_are_checked() -> None:
    model = EmbedGRU()
    Y = sv.name(tokens(), "bs T")
    with sv.checking(inputs="bs T", ops=True):
        logits = model(tokens())
        with pytest.raises(sv.ShapeError, match="flatten_order"):
            nn.CrossEntropyLoss()(logits, Y.reshape(-1))
        with pytest.raises(sv.ShapeError, match="flatten_order"):
            F.nll_loss(F.log_softmax(logits, -1), Y.reshape(-1))
        assert nn.NLLLoss()(F.log_softmax(logits, -1), Y.T.reshape(-1)).dim() == 0


# ------------------------------------------------------------------ warnings
def test_output_last_of_a_bidirectional_layer_warns() -> None:
    lstm = nn.LSTM(3, 5, bidirectional=True, batch_first=True)
    with sv.checking(ops=True):
        out, (h_n, _) = lstm(torch.randn(BS, T, 3))
        with pytest.warns(sv.ShapeWarning, match=r"bidirectional_last.*torch\.cat\(\(h_n\[-2\], h_n\[-1\]\)"):
            last = out[:, -1]  # said at the next op that does not cut it to its forward half
            torch.tanh(last)
        with no_warnings():
            torch.cat((h_n[-2], h_n[-1]), dim=1)  # the twin: both directions' final states


@pytest.mark.parametrize("batch_first", [False, True])
def test_the_forward_half_of_the_last_step_is_right_and_passes(batch_first: bool) -> None:
    """``output[-1, :, :h]`` is the forward direction's final state (``h_n[-2]``): no warning; the backward
    half of the last step, ``output[-1, :, h:]``, still warns."""
    h = 5
    gru = nn.GRU(3, h, bidirectional=True, batch_first=batch_first)
    x = torch.randn(BS, T, 3) if batch_first else torch.randn(T, BS, 3)
    last = (slice(None), -1) if batch_first else (-1, slice(None))
    first = (slice(None), 0) if batch_first else (0, slice(None))
    with sv.checking(ops=True):
        out, h_n = gru(x)
        with no_warnings():
            final = torch.cat((out[(*last, slice(None, h))], out[(*first, slice(h, None))]), dim=1)
            out[(*last, slice(0, 2))], out[(*last, Ellipsis, slice(None, h))], out[(*last, 1)]
        with pytest.warns(sv.ShapeWarning, match="bidirectional_last"):
            out[(*last, slice(h, None))]
        with pytest.warns(sv.ShapeWarning, match="bidirectional_last"):
            out[(*last, slice(h - 1, h + 1))]  # one feature of each direction
    assert torch.equal(final, torch.cat((h_n[-2], h_n[-1]), dim=1))


class BothEnds(nn.Module):
    """``cat((out[:, 0], out[:, -1]), -1)`` of a bidirectional layer: step 0 holds the backward direction's final
    state, the last step the forward's; ``ends=False`` reads the last step alone."""

    def __init__(self, ends: bool, first_first: bool) -> None:
        super().__init__()
        self.gru, self.ends, self.first_first = nn.GRU(3, 5, bidirectional=True, batch_first=True), ends, first_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.gru(x)[0]
        if not self.ends:
            return out[:, -1]
        return torch.cat((out[:, 0], out[:, -1]) if self.first_first else (out[:, -1], out[:, 0]), dim=-1)


@pytest.mark.parametrize("first_first", [False, True])
def test_both_ends_of_a_bidirectional_output_hold_both_final_states_and_pass(first_first: bool) -> None:
    """Both ends read whole, in either order, in a model or in your own code: no warning; the last step alone,
    or its backward half beside step 0, still warns."""
    x = torch.randn(4, 6, 3)
    model = BothEnds(True, first_first)
    with sv.watch(model, inputs="bs T", ops=True):
        with no_warnings():
            both = model(x)
            out = model.gru(x)[0]
            mine = torch.cat((out[:, 0], out[:, -1]) if first_first else (out[:, -1], out[:, 0]), dim=-1)
        assert torch.equal(mine, both) and mine.shape == (4, 20)
        with pytest.warns(sv.ShapeWarning, match="bidirectional_last"):
            BothEnds(False, first_first)(x)
        out = model.gru(x)[0]
        with pytest.warns(sv.ShapeWarning, match="bidirectional_last"):
            torch.cat((out[:, 0], out[:, -1, 5:]), dim=-1)  # the last step's backward half: one step seen
    h_n = model.gru(x)[1]  # unwatched: the backward final state is step 0's backward half
    assert torch.equal(both[:, 5:10] if first_first else both[:, 15:], h_n[-1])


class ForwardFromOutput(nn.Module):
    """Both directions' final states as ``out[:, -1, :h]`` (the forward's, = ``h_n[-2]``) and ``h_n[-1]``
    (the backward's), read in either order, the forward half cut at once or afterwards."""

    def __init__(self, h_n_first: bool, cut_after: bool) -> None:
        super().__init__()
        self.gru, self.h_n_first, self.cut_after = nn.GRU(3, 5, bidirectional=True, batch_first=True), h_n_first, \
            cut_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h_n = self.gru(x)
        back = h_n[-1] if self.h_n_first else None
        fwd = out[:, -1][:, :5] if self.cut_after else out[:, -1, :5]
        return torch.cat((fwd, h_n[-1] if back is None else back), dim=1)


@pytest.mark.parametrize("h_n_first", [False, True])
@pytest.mark.parametrize("cut_after", [False, True])
def test_h_n_last_beside_the_outputs_forward_final_state_passes(h_n_first: bool, cut_after: bool) -> None:
    """``cat((out[:, -1, :h], h_n[-1]))`` is both final states (``out[:, -1, :h]`` is ``h_n[-2]``): no
    ``bidirectional_h_n``; ``h_n[-1]`` beside the backward half of the last step still warns."""
    x = torch.randn(4, 6, 3)
    model = ForwardFromOutput(h_n_first, cut_after)
    with sv.watch(model, inputs="bs T", ops=True):
        with no_warnings():
            both = model(x)
        out, h_n = model.gru(x)
        with pytest.warns(sv.ShapeWarning, match="bidirectional_h_n"):
            torch.cat((out[:, -1, 5:], h_n[-1]), dim=1)
            model.gru(x)  # the block goes on: said when the model's next call ends
    out, h_n = model.gru(x)
    assert torch.equal(both, torch.cat((h_n[-2], h_n[-1]), dim=1))


FORWARD_FINALS = {  # the forward direction's final state (h_n[-2]) read from a bidirectional output, h = 5
    "transposed": lambda out, bf: (out if bf else out.transpose(0, 1))[:, -1, :5],
    "permuted": lambda out, bf: (out if bf else out.permute(1, 0, 2))[:, -1, :5],
    "chunked": lambda out, bf: out.chunk(2, -1)[0][:, -1] if bf else out.chunk(2, -1)[0][-1],
    "split": lambda out, bf: out.split(5, -1)[0][:, -1] if bf else out.split(5, -1)[0][-1],
    "cut first": lambda out, bf: out[:, :, :5][:, -1] if bf else out[:, :, :5][-1],
    "directions": lambda out, bf: out.view(4, -1, 2, 5)[:, -1, 0] if bf else out.view(-1, 4, 2, 5)[-1, :, 0],
}


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("T", [1, 6])
@pytest.mark.parametrize("form", sorted(FORWARD_FINALS))
def test_h_n_last_beside_any_form_of_the_forward_final_state_passes(form: str, T: int, batch_first: bool) -> None:
    """``h_n[-1]`` beside the output's forward final state, however it is read (transposed, the halves split
    before the step is picked, the directions split, one step only): both final states, no warning; ``h_n[-1]``
    beside the backward half of every step's last one still warns."""
    gru = nn.GRU(3, 5, bidirectional=True, batch_first=batch_first)
    x = torch.randn(4, T, 3) if batch_first else torch.randn(T, 4, 3)
    with sv.checking(ops=True):
        with no_warnings():
            out, h_n = gru(x)
            both = torch.cat((FORWARD_FINALS[form](out, batch_first), h_n[-1]), 1)
            gru(x)  # the block goes on: a held warning would be said when this call ends
        out, h_n = gru(x)
        with pytest.warns(sv.ShapeWarning, match="bidirectional_h_n"):
            torch.cat((out.chunk(2, -1)[1].select(int(batch_first), -1), h_n[-1]), 1)
            gru(x)
    assert torch.allclose(both, torch.cat((h_n[-2], h_n[-1]), 1))


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("in_model", [False, True])
def test_the_last_step_cut_to_its_forward_half_afterwards_is_right_and_passes(batch_first: bool,
                                                                               in_model: bool) -> None:
    """``out[:, -1][:, :h]`` and ``out[:, -1].narrow(-1, 0, h)`` are the forward direction's final state, as
    ``out[:, -1, :h]`` is: no warning, in your own code or inside a model. The step used whole, or cut to its
    backward half, still warns."""
    h = 4
    gru = nn.GRU(3, h, bidirectional=True, batch_first=batch_first)
    x = torch.randn(BS, T, 3) if batch_first else torch.randn(T, BS, 3)

    def last(out: torch.Tensor) -> torch.Tensor:
        return out[:, -1] if batch_first else out[-1]

    def first(out: torch.Tensor) -> torch.Tensor:
        return out[:, 0] if batch_first else out[0]

    def summaries(how: str) -> torch.Tensor:
        out, _ = gru(x)
        if how == "index":
            return torch.cat((last(out)[:, :h], first(out)[:, h:]), -1)
        if how == "narrow":
            return torch.cat((last(out).narrow(-1, 0, h), first(out).narrow(1, h, h)), -1)
        if how == "ellipsis":
            return torch.cat((last(out)[..., :h], first(out)[..., h:]), -1)
        if how == "whole":
            return torch.tanh(last(out))
        return last(out)[:, h:]  # "backward": the backward half of the last step

    class Model(nn.Module):
        def __init__(self, how: str) -> None:
            super().__init__()
            self.how, self.gru = how, gru

        def forward(self, _: torch.Tensor) -> torch.Tensor:
            return summaries(self.how)

    def run(how: str) -> torch.Tensor:
        with sv.checking(ops=True):
            got = Model(how)(x) if in_model else summaries(how)
            torch.zeros(1) + 1  # the next op
        return got

    with no_warnings():
        got = [run(how) for how in ("index", "narrow", "ellipsis")]
    _, h_n = gru(x)
    for g in got:
        assert torch.equal(g, torch.cat((h_n[-2], h_n[-1]), dim=1))
    for how in ("whole", "backward"):
        with pytest.warns(sv.ShapeWarning, match="bidirectional_last"):
            run(how)


_CUT_LATER = {
    "view": (lambda o, h: o[:, -1].view(BS, 2, h)[:, 0], False),
    "unflatten": (lambda o, h: o[:, -1].unflatten(-1, (2, h))[:, 0], False),
    "chunk": (lambda o, h: o[:, -1].chunk(2, -1)[0] * 2, False),
    "split, backward unused": (lambda o, h: (lambda f, b: f * 2)(*o[:, -1].split(h, -1)), False),
    "view, used whole": (lambda o, h: o[:, -1].view(BS, 2, h).sum(), True),
    "view, backward": (lambda o, h: o[:, -1].view(BS, 2, h)[:, 1] + 0, True),
    "split, backward used": (lambda o, h: (lambda f, b: b * 2)(*o[:, -1].split(h, -1)), True),
    "chunk, both joined": (lambda o, h: torch.cat(o[:, -1].chunk(2, -1), -1), True),
}


@pytest.mark.parametrize("case", list(_CUT_LATER))
@pytest.mark.parametrize("in_model", [False, True])
def test_the_last_step_split_into_its_directions_afterwards_warns_only_if_its_backward_half_is_used(
        case: str, in_model: bool) -> None:
    h = 6
    gru = nn.GRU(4, h, batch_first=True, bidirectional=True)
    read, wrong = _CUT_LATER[case]

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = gru

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return read(self.gru(x)[0], h)

    x = torch.randn(BS, T, 4)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with sv.checking(ops=True):
            got = Model()(x) if in_model else read(gru(x)[0], h)
            torch.zeros(1) + 1  # the next op
    said = [w for w in seen if issubclass(w.category, sv.ShapeWarning)]
    assert len(said) == int(wrong) and all("bidirectional_last" in str(w.message) for w in said)
    if case in ("view", "unflatten"):
        assert torch.equal(got, gru(x)[1][-2])


def test_the_last_step_read_by_narrow_warns_unless_cut_to_its_forward_half() -> None:
    """``out.narrow(1, T - 1, 1)`` and ``out.index_select(1, tensor([T - 1]))`` read the last step as
    ``out[:, -1:]`` does, its time dim kept."""
    gru = nn.GRU(3, 4, bidirectional=True, batch_first=True)
    x = torch.randn(BS, T, 3)
    with pytest.warns(sv.ShapeWarning, match="bidirectional_last"), sv.checking(ops=True):
        out, _ = gru(x)
        out.narrow(1, T - 1, 1).squeeze(1)
    with pytest.warns(sv.ShapeWarning, match="bidirectional_last"), sv.checking(ops=True):
        out, _ = gru(x)
        out.index_select(1, torch.tensor([T - 1])).squeeze(1)
    with no_warnings():
        with sv.checking(ops=True):
            out, _ = gru(x)
            out.narrow(1, T - 1, 1)[..., :4]


@pytest.mark.parametrize("split", ["view", "unflatten"])
def test_the_last_step_of_an_output_split_into_its_directions_warns_unless_forward(split: str) -> None:
    """``output.view(T, bs, 2, h)`` (torch's docs' way to separate the directions): ``[-1, :, 0]`` is the
    forward direction's final state; ``[-1]`` whole, or its backward direction ``[-1, :, 1]``, warns."""
    h = 4
    gru = nn.GRU(3, h, bidirectional=True)

    def dirs(out: torch.Tensor) -> torch.Tensor:
        return out.view(T, BS, 2, h) if split == "view" else out.unflatten(-1, (2, h))

    x = torch.randn(T, BS, 3)
    with no_warnings():
        with sv.checking(ops=True):
            d = dirs(gru(x)[0])
            right = [torch.cat((d[-1, :, 0], d[0, :, 1]), -1), torch.cat((d[-1][:, 0], d[0][:, 1]), -1)]
            d[-1].narrow(-2, 0, 1)
            torch.zeros(1) + 1
    _, h_n = gru(x)
    for r in right:
        assert torch.equal(r, torch.cat((h_n[-2], h_n[-1]), dim=1))
    for wrong in (lambda d: d[-1].flatten(1), lambda d: d[-1, :, 1]):
        with pytest.warns(sv.ShapeWarning, match="bidirectional_last"), sv.checking(ops=True):
            wrong(dirs(gru(x)[0])) + 0


@pytest.mark.parametrize("layers", [1, 2])
def test_the_backward_state_picked_by_its_index_from_the_front_is_silent(layers: int) -> None:
    """``h_n[1]`` of a one-layer bidirectional GRU (``h_n[3]`` of two layers) is the backward direction's final
    state picked by its index: Bahdanau et al.'s decoder starts from ``tanh(W h←_1)``. ``h_n[-1]``, "the last
    state", is the classic slip that warns."""
    gru, init = nn.GRU(3, 5, num_layers=layers, bidirectional=True), nn.Linear(5, 5)
    _, h_n = gru(torch.randn(T, BS, 3))
    assert torch.equal(h_n[2 * layers - 1], h_n[-1])  # the same tensor, read on purpose
    with no_warnings():
        with sv.checking(ops=True):
            _, h_n = gru(torch.randn(T, BS, 3))
            torch.tanh(init(h_n[2 * layers - 1]))
    with pytest.warns(sv.ShapeWarning, match="bidirectional_h_n"), sv.checking(ops=True):
        _, h_n = gru(torch.randn(T, BS, 3))
        torch.tanh(init(h_n[-1]))


def test_h_n_last_of_a_bidirectional_layer_warns() -> None:
    gru = nn.GRU(3, 5, num_layers=2, bidirectional=True)
    with pytest.warns(sv.ShapeWarning, match="bidirectional_h_n") as rec, sv.checking(ops=True):
        _, h_n = gru(torch.randn(T, BS, 3))
        h_n[-1]  # said when the block ends: the forward half may still be read
    assert rec[0].message.code == "bidirectional_h_n"
    for both in (lambda h: torch.cat((h[-2], h[-1]), dim=1), lambda h: h[-1] + h[-2]):  # either order
        with warnings.catch_warnings():
            warnings.simplefilter("error", sv.ShapeWarning)  # the block's end included
            with sv.checking(ops=True):
                _, h_n = gru(torch.randn(T, BS, 3))
                assert both(h_n).shape[0] == BS


def test_output_last_of_a_padded_batch_warns() -> None:
    lstm = nn.LSTM(3, 5)
    lengths = torch.tensor([T, 5, 2, 1])
    with sv.checking(ops=True):
        packed, (h_n, _) = lstm(pack_padded_sequence(torch.randn(T, BS, 3), lengths))
        out, _ = pad_packed_sequence(packed)
        with pytest.warns(sv.ShapeWarning, match="padded_last"):
            out[-1]
        with no_warnings():
            assert out[lengths - 1, torch.arange(BS)].shape == (BS, 5)  # the twin
            assert h_n[-1].shape == (BS, 5)


@pytest.mark.parametrize("batch_first", [False, True])
def test_a_padded_batch_without_padding_and_a_single_step_do_not_warn(batch_first: bool) -> None:
    """Sequences of equal lengths, padded back to their length, have no padding; with one step, the last step is
    the first, which the backward direction has seen whole. A padded batch of unequal lengths still warns, in
    the words of its layout."""
    lstm = nn.LSTM(3, 5, batch_first=batch_first)
    gru = nn.GRU(3, 4, bidirectional=True, batch_first=batch_first)
    last = (slice(None), -1) if batch_first else (-1,)
    with sv.checking(ops=True):
        with no_warnings():
            for lengths in ([4, 4, 4], [1, 1, 1]):
                x = torch.randn(3, max(lengths), 3) if batch_first else torch.randn(max(lengths), 3, 3)
                packed, _ = lstm(pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first))
                pad_packed_sequence(packed, batch_first=batch_first)[0][last]
            out, _ = gru(torch.randn(3, 1, 3) if batch_first else torch.randn(1, 3, 3))  # T=1
            out[last], out[(*last, slice(4, None))]
        packed, _ = lstm(pack_padded_sequence(torch.randn(3, 4, 3) if batch_first else torch.randn(4, 3, 3),
                                              torch.tensor([4, 2, 1]), batch_first=batch_first))
        out, _ = pad_packed_sequence(packed, batch_first=batch_first)
        pick = "output[:, -1]" if batch_first else "output[-1]"
        with pytest.warns(sv.ShapeWarning, match=rf"padded_last\] {re.escape(pick)} of a padded batch"):
            out[last]


# ------------------------------------------------------------------ cleanup
def test_flow_mode_is_removed_on_every_path() -> None:
    model = EmbedGRU(scramble=True)

    def modes() -> int:
        return sum(isinstance(m, FlowMode) for m in torch.overrides._get_current_function_mode_stack())

    for _ in range(2):
        with pytest.raises(sv.ShapeError):
            with sv.checking(ops=True):
                model(tokens().T.contiguous().T)  # named nothing: inputs not given, so no error...
                raise sv.ShapeError(module="m", argument="a", expected="e", actual=(1,), code="input_size")
        assert modes() == 0
    h = sv.watch(model, inputs="bs T", ops=True)
    assert modes() == 1
    h.remove()
    h.remove()
    assert modes() == 0
    with pytest.raises(KeyboardInterrupt), sv.watch(EmbedGRU(), ops=True):
        raise KeyboardInterrupt
    assert modes() == 0


# ------------------------------------------------------------------ the seeds' d2l char-RNN (hand-written loop)
def seed_step(right: bool) -> torch.Tensor:
    from shapeviz.gallery.models import CharRNNScratch

    model = CharRNNScratch(vocab=VOCAB, hidden=16)
    X, Y = tokens(), sv.name((tokens() + 1) % VOCAB, "bs T")
    with sv.watch(model, inputs="bs T", ops=True):
        y_hat, _ = model(X)  # torch.cat(outputs, dim=0): (T*bs, vocab)
        y = Y.T.reshape(-1) if right else Y.reshape(-1)  # the seeds write Y.T.reshape(-1)
        return F.cross_entropy(y_hat, y.long()).mean()


def test_seed_char_rnn_loss_with_Y_reshape_raises() -> None:
    with pytest.raises(sv.ShapeError, match="flatten_order") as info:
        seed_step(right=False)
    assert "the logits' rows are T*bs but the targets' rows are bs*T" in str(info.value)


def test_seed_char_rnn_loss_with_Y_T_reshape_passes() -> None:
    assert seed_step(right=True).dim() == 0


# ------------------------------------------------------------------ diagnosis you can act on
def _shape_error(module: nn.Module, *args: torch.Tensor) -> sv.ShapeError:
    with pytest.raises(sv.ShapeError) as info:
        sv.check_call(module, *args)
    return info.value


def test_the_necessary_fix_first_emb_then_the_swap() -> None:
    with sv.dims(bs=4, T=7):
        err = _shape_error(nn.LSTM(5, 8), torch.randn(4, 7, 35))
    assert err.code == "input_size"  # transpose(0, 1) alone would not fix it: 35 is not emb=5
    assert "it is also laid out (bs, T, emb) for a layer with batch_first=False" in str(err)
    assert err.hints[0].startswith("x = proj(x)") and err.hints[-1].startswith("then x = x.transpose(0, 1)")
    with sv.dims(bs=4, T=7):  # the twin: only the swap
        assert _shape_error(nn.LSTM(5, 8), torch.randn(4, 7, 5)).code == "batch_first_swap"


def test_watch_inputs_disagreeing_with_sv_dims_names_both() -> None:
    rnn = nn.RNN(8, 16, batch_first=True)
    with sv.dims(bs=4, T=7), sv.watch(rnn, inputs="bs T emb"):
        with pytest.raises(sv.SpecError, match=r"names RNN's input \(7, 4, 8\) as bs=7, T=4, but sv.dims declared "
                                                r"bs=4, T=7"):
            rnn(torch.randn(7, 4, 8))
        assert rnn(torch.randn(4, 7, 8))[0].shape == (4, 7, 16)  # the twin agrees


def test_hints_fit_the_case() -> None:
    err = _shape_error(nn.LSTM(5, 8, batch_first=True), torch.randn(4, 7, 2, 5))
    assert err.hints[0].startswith("x = x.reshape(bs, T, 5)")  # not (T, bs, …) for a batch_first layer
    err = _shape_error(nn.LSTMCell(1, 8), torch.randn(4, 1, 1))  # x[:, t:t+1] of a (bs, T, 1) series
    assert err.hints == ["x_t = x_t.squeeze(1)  # (4, 1, 1) -> (4, 1): one step (bs, emb)"]
    smaller = _shape_error(nn.GRU(5, 8), torch.randn(7, 4, 5), torch.zeros(1, 6, 8))
    assert "last batch of an epoch" in str(smaller)
    laid_out = _shape_error(nn.GRU(5, 8), torch.randn(7, 4, 5), torch.zeros(1, 8, 6))  # (…, h, bs): not a batch
    assert laid_out.code == "batch_mismatch" and "last batch" not in str(laid_out)


@pytest.mark.parametrize("mask_first", [True, False])
def test_a_broadcast_operand_first_keeps_the_other_operands_names(mask_first: bool) -> None:
    """A locked-dropout mask ``(1, bs, h)`` times the output ``(T, bs, h)``: the product is named like the output
    whichever side the mask is on, so the wrong flatten order of the targets after it is still caught."""
    emb, rnn, out = nn.Embedding(30, 6), nn.LSTM(6, 8), nn.Linear(8, 30)
    X, Y = torch.randint(0, 30, (7, 4)), sv.name(torch.randint(0, 30, (7, 4)), "T bs")

    def logits(x: torch.Tensor) -> torch.Tensor:
        y, _ = rnn(emb(x))
        mask = y.new_ones(1, y.shape[1], y.shape[2])
        y = mask * y if mask_first else y * mask
        return out(y.reshape(-1, 8))  # rows T*bs

    with sv.checking(inputs="T bs", ops=True):
        F.cross_entropy(logits(X), Y.reshape(-1))  # targets T*bs too: right
    with sv.checking(inputs="T bs", ops=True), pytest.raises(sv.ShapeError, match="flatten_order"):
        F.cross_entropy(logits(X), Y.t().reshape(-1))


@pytest.mark.parametrize("squeeze", ["dim", "all", "index"])
def test_squeezed_step_logits_keep_their_names(squeeze: str) -> None:
    """A decoder's step logits ``(bs, 1, V)`` squeezed (by dim, or all size-1 dims) keep ``bs``, like ``[:, 0]``:
    stacked over the steps they are (bs, T, V), so the wrong flatten order of the targets is still caught."""
    emb, rnn, out = nn.Embedding(30, 8), nn.GRU(8, 16, batch_first=True), nn.Linear(16, 30)
    trg = sv.name(torch.randint(0, 30, (3, 7)), "bs T")

    def logits() -> torch.Tensor:
        h, steps = None, []
        for t in range(trg.shape[1]):
            y, h = rnn(emb(trg[:, t:t + 1]), h)
            step = out(y)  # (bs, 1, V)
            steps.append(step.squeeze(1) if squeeze == "dim" else step.squeeze() if squeeze == "all" else step[:, 0])
        return torch.stack(steps, 1)  # (bs, T, V)

    with sv.checking(ops=True):
        F.cross_entropy(logits().reshape(-1, 30), trg.reshape(-1))  # both bs*T: right
    with sv.checking(ops=True), pytest.raises(sv.ShapeError, match="flatten_order"):
        F.cross_entropy(logits().transpose(0, 1).reshape(-1, 30), trg.reshape(-1))


def test_a_time_axis_cut_from_bs_names_the_layer_by_its_path_and_hints_the_transpose() -> None:
    """A dilated layer's steps taken apart along dim 0 of an untransposed (bs, T, emb): its time axis holds parts of
    bs. The error names the layer by its path and configuration, and its first hint is the transpose."""
    class Dilated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cells = nn.ModuleList([nn.RNN(5, 9)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (bs, T, emb), the transpose forgotten
            return self.cells[0](torch.cat([x[j::2] for j in range(2)], 1))[0]

    model = Dilated()
    with sv.watch(model, inputs="bs T emb", ops=True), pytest.raises(sv.ShapeError) as err:
        model(torch.randn(6, 12, 5))
    assert err.value.code == "scrambled_view" and str(err.value).startswith("[scrambled_view] cells.0: RNN(5, 9)")
    assert err.value.hints[0].startswith("x = x.transpose(0, 1)")


@pytest.mark.parametrize(("bs", "W"), [(3, 16), (8, 16), (4, 16)])
def test_a_conv_and_a_pooling_keep_the_batch_so_a_forgotten_permute_is_caught(bs: int, W: int) -> None:
    """A CRNN's (bs, C, H, W) features read as (W', bs, C*H) need permute(2, 0, 1); permute(0, 2, 1) feeds
    (bs, W', C*H). The conv and the pooling keep dim 0 the model input's bs, so provenance catches it, also
    where bs == W' (8) or W' is a multiple of bs (4)."""
    class CRNN(nn.Module):
        def __init__(self, order: tuple[int, int, int]) -> None:
            super().__init__()
            self.order = order
            self.cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2))
            self.rnn = nn.LSTM(16, 8, bidirectional=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (bs, 1, H=8, W)
            f = self.cnn(x)
            b, c, h, w = f.shape
            return self.rnn(f.view(b, c * h, w).permute(*self.order))[0]

    x = torch.randn(bs, 1, 8, W)
    right, wrong = CRNN((2, 0, 1)), CRNN((0, 2, 1))
    with sv.watch(right, inputs="bs C H W", ops=True):
        right(x)
    with sv.watch(wrong, inputs="bs C H W", ops=True), pytest.raises(sv.ShapeError, match="batch_first_swap"):
        wrong(x)


class SpectrogramLSTM(nn.Module):
    """A conv over ``(bs, 1, F, T)``, its ``(bs, C, F, T)`` features read as ``(bs, T, C*F)``: right with the permute
    that moves T next to bs first, scrambled without it (the reshape relabels C*F*T as T × C*F)."""

    def __init__(self, permute: bool, F: int = 8, C: int = 3) -> None:
        super().__init__()
        self.permute = permute
        self.conv, self.lstm = nn.Conv2d(1, C, 3, padding=1), nn.LSTM(C * F, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (bs, F, T)
        c = self.conv(x.unsqueeze(1))
        bs, C, F, T = c.shape
        return self.lstm((c.permute(0, 3, 1, 2) if self.permute else c).reshape(bs, T, C * F))[0]


class SeqFirstPyramid(nn.Module):
    """A pyramidal LSTM over ``(T, bs, d)`` halving T: right through batch-first and back, scrambled by a
    reshape ``(T/2, bs, 2*d)`` of the seq-first output (it pairs each step with the next sequence's)."""

    def __init__(self, right: bool) -> None:
        super().__init__()
        self.right = right
        self.l0, self.l1 = nn.LSTM(3, 3), nn.LSTM(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, bs, 3)
        o = self.l0(x)[0]
        T, bs, d = o.shape
        half = (o.transpose(0, 1).reshape(bs, T // 2, 2 * d).transpose(0, 1) if self.right
                else o.reshape(T // 2, bs, 2 * d))
        return self.l1(half)[0]


@pytest.mark.parametrize(("bs", "F", "T"), [(2, 8, 6), (4, 8, 8), (3, 4, 6)])
def test_a_reshape_that_puts_the_models_T_into_the_features_is_caught(bs: int, F: int, T: int) -> None:
    """(bs, C, F, T).reshape(bs, T, C*F) without the permute: the layer's time axis is a cut of C*F and the
    model input's T is in its features. It was caught only where F == T; the permuted reshape stays silent."""
    with no_warnings():
        caught_and_silent(SpectrogramLSTM(False, F), SpectrogramLSTM(True, F), torch.randn(bs, F, T),
                          match="scrambled_view", inputs="bs F T")


@pytest.mark.parametrize(("T", "bs"), [(6, 2), (4, 4), (8, 2)])
def test_a_seq_first_reshape_that_puts_bs_into_the_features_is_caught(T: int, bs: int) -> None:
    """``(T, bs, d).reshape(T/2, bs, 2*d)``: the layer's batch axis is a cut of T and bs is in its features
    (caught only where T == bs before); through batch-first and back it is right."""
    with no_warnings():
        caught_and_silent(SeqFirstPyramid(False), SeqFirstPyramid(True), torch.randn(T, bs, 3), match="scrambled_view",
                          inputs="T bs")


@pytest.mark.parametrize("batch_first", [True, False])
def test_a_padded_batch_packed_as_the_other_layout_is_caught_by_provenance(batch_first: bool) -> None:
    """pad_sequence(batch_first=True) gives (bs, T, f); packing it without batch_first cuts each sequence into the
    others' steps. With bs == T torch runs it; the padded batch's provenance says which dim is bs."""
    lengths = [4, 3, 4, 2]
    padded = sv.name(nn.utils.rnn.pad_sequence([torch.randn(n, 5) for n in lengths], batch_first=True), "bs T f")
    rnn = nn.LSTM(5, 5)
    with sv.checking(ops=True):
        x = padded if batch_first else padded.transpose(0, 1)  # (bs, T, f) or (T, bs, f)
        rnn(pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False))
        with pytest.raises(sv.ShapeError) as err:
            pack_padded_sequence(x, torch.tensor(lengths), batch_first=not batch_first, enforce_sorted=False)
    assert err.value.code == "packed" and f"batch_first={batch_first}" in err.value.hints[0], err.value


class CharWords(nn.Module):
    """Characters ``(bs, T, W)``: a char CNN over the ``bs*T`` words (Conv1d, then max over W), split back into
    words; ``wrong`` splits ``bs*T`` as ``(T, bs)`` with a view."""

    def __init__(self, wrong: bool) -> None:
        super().__init__()
        self.wrong = wrong
        self.emb, self.conv, self.lstm = nn.Embedding(15, 5), nn.Conv1d(5, 10, 3), nn.LSTM(10, 10)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        bs, T, W = chars.shape
        x = self.conv(self.emb(chars.view(bs * T, W)).transpose(1, 2)).max(dim=2)[0]  # (bs*T, 10)
        x = x.view(T, bs, -1) if self.wrong else x.view(bs, T, -1).transpose(0, 1)
        return self.lstm(x)[0]


def test_a_conv_and_a_max_over_a_dim_keep_a_merged_batch() -> None:
    """Conv1d keeps dim 0 and ``max(dim=2)`` (values and indices) keeps the others: the words' ``bs*T`` reaches
    the view, so splitting it as ``(T, bs)`` is caught, and splitting it right and transposing is not."""
    chars = torch.randint(1, 15, (3, 7, 6))
    caught_and_silent(CharWords(wrong=True), CharWords(wrong=False), chars, match="scrambled_view")
    t = sv.trace(CharWords(wrong=False), chars, ops=True, inputs_dims="bs T")
    assert t.find(path="conv")[0].outputs[0].names[0] == "bs*T"
    values, indices = t.find(type="max")[0].outputs
    assert values.names[0] == indices.names[0] == "bs*T", (values, indices)
    unbatched = sv.trace(nn.Conv2d(3, 4, 3), sv.name(torch.randn(3, 8, 8), "c x y"))  # dim 0: channels, changed
    assert not (unbatched.calls[0].outputs[0].names or ("",))[0], unbatched.calls[0].outputs[0]


class BatchFirstCTC(nn.Module):
    """A batch-first GRU's per-step log-probabilities, ``(bs, T, C)``."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.fc = nn.GRU(5, 8, batch_first=True), nn.Linear(8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x)[0]).log_softmax(-1)


@pytest.mark.parametrize("loss", ["function", "module"])
def test_ctc_given_batch_first_log_probs_is_caught_whatever_the_sizes(loss: str) -> None:
    """CTC reads (T, bs, C); with bs == T torch runs the untransposed (bs, T, C) and scores the wrong
    sequences. Provenance says dim 0 is bs; the transposed call stays silent."""
    model, x = BatchFirstCTC(), torch.randn(4, 4, 5)
    targets, lengths, target_lengths = torch.randint(1, 6, (4, 2)), torch.full((4,), 4), torch.full((4,), 2)
    ctc = F.ctc_loss if loss == "function" else nn.CTCLoss()
    with sv.watch(model, inputs="bs T", ops=True), pytest.raises(sv.ShapeError) as err:
        ctc(model(x), targets, lengths, target_lengths)
    assert err.value.code == "batch_first_swap" and err.value.argument == "log_probs", err.value
    assert err.value.hints[0].startswith("log_probs = log_probs.transpose(0, 1)")
    with sv.watch(model, inputs="bs T", ops=True):
        ctc(model(x).transpose(0, 1), targets, lengths, target_lengths)


class SoftAlign(nn.Module):
    """ESIM's soft alignment of two encoded sentences ``(bs, L, 2h)``; ``wrong`` transposes the similarity's
    dims 0 and 1 where 1 and 2 were meant, so the second bmm pairs each sentence's steps with the batch."""

    def __init__(self, wrong: bool) -> None:
        super().__init__()
        self.wrong = wrong
        self.enc = nn.LSTM(5, 3, batch_first=True, bidirectional=True)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ea, eb = self.enc(a)[0], self.enc(b)[0]
        sim = torch.bmm(ea, eb.transpose(1, 2))  # (bs, La, Lb)
        weights = (sim.transpose(0, 1) if self.wrong else sim.transpose(1, 2)).softmax(-1)
        return torch.bmm(weights, ea)


class ShiftedLM(nn.Module):
    """A language model over ``(bs, T)`` tokens: inputs ``x[:, :-1]`` and targets ``x[:, 1:]`` (T-1 steps each),
    run seq-first; ``wrong``: the targets flattened batch-first against seq-first logits."""

    def __init__(self, wrong: bool) -> None:
        super().__init__()
        self.emb, self.gru, self.out, self.wrong = nn.Embedding(20, 8), nn.GRU(8, 16), nn.Linear(16, 20), wrong

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp, tgt = x[:, :-1], x[:, 1:]
        logits = self.out(self.gru(self.emb(inp.t()))[0])  # (T-1, bs, V)
        return F.cross_entropy(logits.reshape(-1, 20), (tgt if self.wrong else tgt.t()).reshape(-1))


@pytest.mark.parametrize(("bs", "T"), [(4, 7), (3, 3), (4, 5)])
def test_shifted_inputs_and_targets_keep_their_time_dim(bs: int, T: int) -> None:
    """``x[:, 1:]`` and ``x[:, :-1]`` are T-1 steps whatever T (named ``T-1``): a flatten order mismatch of a
    language model's shifted targets is caught; the right order passes (bs == T-1 at (4, 5) too)."""
    x = torch.randint(0, 20, (bs, T))
    with sv.watch(right := ShiftedLM(False), inputs="bs T", ops=True):
        right(x)
    with sv.watch(wrong := ShiftedLM(True), inputs="bs T", ops=True), pytest.raises(sv.ShapeError) as err:
        wrong(x)
    assert err.value.code == "flatten_order", err.value


class MaskedAttention(nn.Module):
    """Attention over a batch-first GRU's steps with the padding masked out; ``mask_t``: the mask built seq-first
    ``(T, bs)`` (from a seq-first pipeline's ``x.t() == 0``), the sizes agreeing where bs == T."""

    def __init__(self, mask_t: bool, where: bool) -> None:
        super().__init__()
        self.emb, self.gru = nn.Embedding(10, 8), nn.GRU(8, 8, batch_first=True)
        self.q, self.mask_t, self.where = nn.Parameter(torch.randn(8)), mask_t, where

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.gru(self.emb(x))[0]  # (bs, T, D*h)
        scores = out @ self.q  # (bs, T)
        mask = x.t() == 0 if self.mask_t else x == 0
        scores = torch.where(mask, -1e9, scores) if self.where else scores.masked_fill(mask, -1e9)
        return (scores.softmax(-1).unsqueeze(-1) * out).sum(1)


@pytest.mark.parametrize("where", [False, True])
def test_a_mask_laid_out_the_other_way_is_caught(where: bool) -> None:
    """``scores.masked_fill(mask, …)`` / ``torch.where(mask, …, scores)`` with a ``(T, bs)`` mask on ``(bs, T)``
    scores masks other sequences' steps (torch runs it where bs == T); the mask of the scores' layout passes, and
    a mask broadcast from size 1 ``(bs, 1)`` too."""
    x = torch.randint(0, 10, (5, 5))
    with sv.watch(MaskedAttention(False, where), inputs="bs T", ops=True):
        MaskedAttention(False, where)(x)
    with sv.watch(model := MaskedAttention(True, where), inputs="bs T", ops=True), \
            pytest.raises(sv.ShapeError) as err:
        model(x)
    assert err.value.code == "batch_mismatch" and err.value.argument == ("other" if where else "mask"), err.value
    with sv.checking(inputs="bs T", ops=True):
        scores = sv.name(torch.randn(5, 5), "bs T")
        scores.masked_fill(sv.name(torch.ones(5, 1, dtype=torch.bool), "bs _"), 0.0)


def test_a_batched_matmul_whose_operands_batch_dims_differ_is_caught() -> None:
    """bs == La == Lb: torch runs the wrong transpose; provenance says the first operand's dim 0 is T and the
    second's bs. The right transpose stays silent."""
    a, b = torch.randn(4, 4, 5), torch.randn(4, 4, 5)
    caught_and_silent(SoftAlign(wrong=True), SoftAlign(wrong=False), a, b, match=r"batch_mismatch[\s\S]*is T but")


@pytest.mark.parametrize("negative", [False, True])
def test_a_loop_over_every_step_of_a_bidirectional_or_padded_output_does_not_warn(negative: bool) -> None:
    """A cell consuming every step of a bidirectional output, a masked loop over every step of a padded one: the
    last step read in such a loop is no summary of the sequence. Only ``output[-1]``, the last counted from the
    end and read alone, warns."""
    gru = nn.GRU(3, 5, bidirectional=True, batch_first=True)
    packed_gru = nn.GRU(3, 5)
    x, lengths = torch.randn(BS, T, 3), torch.tensor([T, 2, 1][:BS] + [1] * max(0, BS - 3))
    with sv.checking(ops=True):
        with no_warnings():
            y, _ = gru(x)
            for t in range(T):
                y[:, t - T if negative else t]
            out, _ = pad_packed_sequence(packed_gru(pack_padded_sequence(x.transpose(0, 1), lengths,
                                                                         enforce_sorted=False))[0])
            for t in range(T):
                out[t - T if negative else t]
        with pytest.warns(sv.ShapeWarning, match="bidirectional_last"):
            gru(x)[0][:, -1].sum()
        with pytest.warns(sv.ShapeWarning, match="padded_last"):
            pad_packed_sequence(packed_gru(pack_padded_sequence(x.transpose(0, 1), lengths,
                                                                enforce_sorted=False))[0])[0][-1]


def test_inside_a_model_the_last_step_warns_at_the_end_of_its_call_unless_every_step_was_read() -> None:
    """Inside a model's call, a read of the last step is held back until the call ends: a loop over every step,
    either way round and with either sign of index, says nothing; the last step read alone warns, written
    ``-1`` or ``T - 1``, at the line of the model's code that read it."""

    class Reader(nn.Module):
        def __init__(self, how: str) -> None:
            super().__init__()
            self.how = how
            self.rnn = nn.GRU(3, 5, bidirectional=True, batch_first=True)
            self.cell = nn.GRUCell(10, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(x)  # (bs, T, 2h)
            h = x.new_zeros(x.shape[0], 5)
            steps = out.shape[1]
            if self.how == "reverse negative":
                for k in range(1, steps + 1):
                    h = self.cell(out[:, -k], h)
            elif self.how == "reverse positive":
                for t in reversed(range(steps)):
                    h = self.cell(out[:, t], h)
            elif self.how == "last positive":
                h = out[:, steps - 1, :5]  # half of it: the forward direction, right
                h = h + out[:, steps - 1][:, :5] + out[:, steps - 1].narrow(-1, 0, 5)  # the step, then cut: right
                h = h + out[:, steps - 1].sum(-1, keepdim=True)  # the whole step used: wrong
            return h

    x = torch.randn(BS, T, 3)
    for how in ("reverse negative", "reverse positive"):
        with no_warnings():
            with sv.checking(ops=True):
                Reader(how)(x)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with sv.checking(ops=True):
            Reader("last positive")(x)
    said = [w for w in seen if issubclass(w.category, sv.ShapeWarning)]
    assert len(said) == 1 and "bidirectional_last" in str(said[0].message)
    assert said[0].filename == __file__  # the line of the model's code, not shapeviz's
    gru = nn.GRU(3, 5, bidirectional=True, batch_first=True)
    with pytest.warns(sv.ShapeWarning, match="bidirectional_last"), sv.checking(ops=True):  # your own code: by
        out, _ = gru(x)  # the block's end
        out[:, out.shape[1] - 1]


# ------------------------------------------------------------------ one permutation, two dims
class _Unsort(nn.Module):
    """Sequences sorted by length, packed, padded back (T, bs, h) and put back in their order."""

    def __init__(self, unsort_dim: int) -> None:
        super().__init__()
        self.unsort_dim = unsort_dim
        self.emb, self.gru = nn.Embedding(20, 6), nn.GRU(6, 5)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:  # (bs, T)
        sorted_lengths, order = lengths.sort(descending=True)
        e = self.emb(tokens.index_select(0, order)).transpose(0, 1)  # (T, bs, emb)
        out, _ = pad_packed_sequence(self.gru(pack_padded_sequence(e, sorted_lengths))[0],
                                     total_length=tokens.shape[1])  # (T, bs, h)
        return out.index_select(self.unsort_dim, order.argsort())


@pytest.mark.parametrize("T", [4, 6])
def test_a_permutation_of_the_batch_used_along_time_raises_and_along_the_batch_passes(T: int) -> None:
    tokens, lengths = torch.randint(0, 20, (4, T)), torch.tensor([T, 2, 3, 1])
    wrong, right = _Unsort(0), _Unsort(1)
    with pytest.raises(sv.ShapeError, match="batch_mismatch") as info, sv.watch(wrong, inputs="bs T", ops=True):
        wrong(tokens, lengths)
    assert "reorders bs" in str(info.value) and "here it reorders T" in str(info.value)
    assert info.value.hints == ["out.index_select(1, index)  # along bs, dim 1 of (T, bs, ·)"]
    with sv.watch(right, inputs="bs T", ops=True):
        assert right(tokens, lengths).shape == (T, 4, 5)


class _Shuffled(nn.Module):
    """One shuffle of the batch for the input and for the state carried over: h's batch is its dim 1."""

    def __init__(self, state_dim: int) -> None:
        super().__init__()
        self.state_dim = state_dim
        self.gru = nn.GRU(6, 6, num_layers=2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (bs, T, emb)
        _, h = self.gru(x)
        perm = torch.randperm(x.shape[0])
        h = h.index_select(self.state_dim, perm)
        return self.gru(x[perm], h)[0]


def test_a_shuffle_used_along_the_states_layers_and_the_inputs_batch_raises() -> None:
    x = torch.randn(2, 5, 6)  # bs == layers: every size fits
    wrong, right = _Shuffled(0), _Shuffled(1)
    with pytest.raises(sv.ShapeError, match="batch_mismatch") as info, sv.watch(wrong, inputs="bs T", ops=True):
        wrong(x)
    assert info.value.hints == ["h.index_select(1, index)  # the earlier index_select: along bs, dim 1 of "
                                "(layers*D, bs, h), as here"]
    with sv.watch(right, inputs="bs T", ops=True):
        assert right(x).shape == (2, 5, 6)
    idx = torch.arange(2)  # an arange is no permutation: it may pick along any dim
    with sv.watch(right, inputs="bs T", ops=True):
        _, h = right.gru(x)
        h.index_select(0, idx), x.index_select(0, idx)


class _Heads(nn.Module):
    """Features split into heads, (bs, H, T, dh), then merged back to (bs, T, H*dh) for a GRU."""

    def __init__(self, transpose_back: bool) -> None:
        super().__init__()
        self.back = transpose_back
        self.proj, self.gru = nn.Linear(8, 8), nn.GRU(8, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (bs, T, emb)
        q = self.proj(x).unflatten(-1, (2, -1)).transpose(1, 2)  # (bs, H=2, T, dh=4)
        q = q.transpose(1, 2) if self.back else q
        return self.gru(q.reshape(x.shape[0], x.shape[1], -1))[0]


@pytest.mark.parametrize("steps", [5, 8, 6])
def test_heads_merged_back_without_the_transpose_back_scramble_t_with_an_unnamed_dim(steps: int) -> None:
    """T=5 steps cut into rows that mix in the heads: a named dim cut where no split can, beside an unnamed one;
    with T=8 or 6 the heads divide T, and the GRU reads steps made of (head, part of T) pairs."""
    x, wrong = torch.randn(3, steps, 8), _Heads(False)
    with pytest.raises(sv.ShapeError, match="scrambled_view") as info, sv.watch(wrong, inputs="bs T", ops=True):
        wrong(x)
    assert "relabels T without moving data" in str(info.value)
    right = _Heads(True)
    with sv.watch(right, inputs="bs T", ops=True):
        assert right(x).shape == (3, steps, 5)
    flagged = sv.trace(wrong, x, inputs_dims="bs T emb", ops=True).find(type="reshape")[0].flag
    assert flagged and "relabels T without" in flagged


class _CellLoop(nn.Module):
    """A GRUCell over the steps; its per-step states stacked (T, bs, h) or joined (T*bs, h), then logits."""

    def __init__(self, h: int, join: str) -> None:
        super().__init__()
        self.join = join
        self.cell, self.fc = nn.GRUCell(5, h), nn.Linear(h, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (bs, T, emb)
        h, outs = x.new_zeros(x.shape[0], self.cell.hidden_size), []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
            outs.append(h)
        return self.fc(torch.stack(outs) if self.join == "stack" else torch.cat(outs, 0))


@pytest.mark.parametrize("join", ["stack", "cat"])
@pytest.mark.parametrize(("h", "bs"), [(7, 3), (6, 3), (6, 7)])
def test_a_cell_loops_time_major_logits_against_batch_major_targets_raise_when_h_equals_t(join: str, h: int,
                                                                                          bs: int) -> None:
    """As many pieces as T has steps are T's steps; a hidden size of the same number counts no pieces; with
    bs == T too, the pieces made from the input's steps (``x[:, t]``) still tell."""
    x, y = torch.randn(bs, 7, 5), sv.name(torch.randint(0, 3, (bs, 7)), "bs T")
    m = _CellLoop(h, join)
    with pytest.raises(sv.ShapeError, match="flatten_order"), sv.watch(m, inputs="bs T", ops=True):
        F.cross_entropy(m(x).reshape(-1, 3), y.reshape(-1))
    with sv.watch(m, inputs="bs T", ops=True):
        F.cross_entropy(m(x).reshape(-1, 3), y.T.reshape(-1))


class AttendLM(nn.Module):
    """Embedding -> GRU -> nn.MultiheadAttention -> F.scaled_dot_product_attention -> Linear, either layout."""

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.bf = batch_first
        self.emb, self.out = nn.Embedding(VOCAB, 8), nn.Linear(8, VOCAB)
        self.rnn = nn.GRU(8, 8, batch_first=batch_first)
        self.mha = nn.MultiheadAttention(8, 2, batch_first=batch_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.emb(x if self.bf else x.T))
        y, _ = self.mha(y, y, y)
        return self.out(y + F.scaled_dot_product_attention(y, y, y))


@pytest.mark.parametrize("batch_first", [False, True])
def test_attention_keeps_the_querys_rows_so_a_flatten_order_past_it_is_caught(batch_first: bool) -> None:
    """An attention returns one row per query, in the query's layout: its result keeps the query's (T, bs) or
    (bs, T) names in the trace and in the flow, so logits flattened T*bs against bs*T targets are caught."""
    model, x = AttendLM(batch_first), tokens()
    t = sv.trace(model, x, ops=True, inputs_dims="bs T")
    lead = ("bs", "T") if batch_first else ("T", "bs")
    for kind in ("MultiheadAttention", "scaled_dot_product_attention", "Linear"):
        (call,) = [c for c in t.find() if c.type == kind]
        assert call.outputs[0].names[:2] == lead, (kind, call.outputs[0])
    (mha,) = [c for c in t.find() if c.type == "MultiheadAttention"]
    assert all(n.endswith("?") or not n for n in mha.outputs[1].names)  # the weights: by size alone
    rows = (lambda y: y.reshape(-1)) if batch_first else (lambda y: y.T.reshape(-1))
    with sv.watch(model, inputs="bs T", ops=True):
        F.cross_entropy(model(x).reshape(-1, VOCAB), rows(sv.name(x, "bs T")))  # rows in the logits' order
    wrong = (lambda y: y.T.reshape(-1)) if batch_first else (lambda y: y.reshape(-1))
    with pytest.raises(sv.ShapeError) as e, sv.watch(model, inputs="bs T", ops=True):
        F.cross_entropy(model(x).reshape(-1, VOCAB), wrong(sv.name(x, "bs T")))
    assert e.value.code == "flatten_order"


class LatentDecoder(nn.Module):
    """sketch-rnn's decoder input: the per-sequence latent z tiled over the steps and joined to each step's
    features. ``wrong`` tiles it batch-first, (bs, T, z), beside a seq-first (T, bs, f) input."""

    def __init__(self, wrong: bool, join: str = "cat") -> None:
        super().__init__()
        self.wrong, self.join = wrong, join
        self.z = nn.Linear(5, 3 if join == "cat" else 5)
        self.rnn = nn.LSTM(8 if join == "cat" else 5, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (T, bs, 5)
        z = self.z(x.mean(0))  # (bs, z)
        zs = z.unsqueeze(1).expand(-1, x.size(0), -1) if self.wrong else z.unsqueeze(0).expand(x.size(0), -1, -1)
        joined = torch.cat([x, zs], 2) if self.join == "cat" else x + zs
        return self.rnn(joined)[0]


@pytest.mark.parametrize("join", ["cat", "add"])
def test_operands_whose_rows_are_T_in_one_and_bs_in_the_other_are_a_batch_mismatch(join: str) -> None:
    """A cat (along the features) or an elementwise op of a (T, bs, …) tensor and a (bs, T, …) one runs when bs ==
    T, pairing step i of each sequence with sequence i: their provenance says so, whatever the sizes."""
    x = torch.randn(4, 4, 5)
    caught_and_silent(LatentDecoder(True, join), LatentDecoder(False, join), x,
                      match=r"batch_mismatch[\s\S]*dim 0 is T but operand 1's is bs", inputs="T bs f")


def test_a_dim_broadcast_from_size_one_or_joined_along_is_no_clash() -> None:
    """Only aligned dims of one size are compared: a (1, bs, h) state added to (T, bs, h) outputs, steps joined
    along T, and an outer sum of a (bs, 1) and a (1, T) tensor run silent."""

    class Fine(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(5, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (T, bs, 5)
            out, h = self.rnn(x)
            both = torch.cat([out, x], 0)  # (2T, bs, 5): joined along T
            grid = out[:, :, 0].T.unsqueeze(2) + out[:, :, 1].unsqueeze(0)  # (bs, T, 1) + (1, T, bs)
            return (out + h).sum() + both.sum() + grid.sum()

    model = Fine()
    with sv.watch(model, inputs="T bs f", ops=True):
        model(torch.randn(4, 4, 5))


def test_a_message_never_seems_to_name_another_tensor_of_yours() -> None:
    """A view of a tensor no variable holds (``lin(x).view(...)``) was written ``x.view(...)``, as if of the
    model's input ``x``; the placeholder is a name no variable there has."""
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.rnn = nn.Linear(4, 4), nn.GRU(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            bs, T, _f = x.shape
            return self.rnn(self.lin(x).view(T, bs, -1))[0]

    with sv.watch(m := M(), inputs="bs T", ops=True), pytest.raises(sv.ShapeError, match="scrambled_view") as err:
        m(torch.randn(2, 6, 4))
    assert "x.view" not in str(err.value) and "y.view(6, 2, -1)" in str(err.value), err.value


def test_einsum_carries_names_in_the_ops_flow() -> None:
    """``torch.einsum("abc->bac", x)`` moves the names with the dims in the flow, as in a trace: the same mistakes
    are caught written with einsum as with permute (a view after it, an untransposed input to a seq-first layer)."""
    from shapeviz.tracing.flow import known_names

    x = sv.name(torch.randn(3, 4, 2), "bs T F")
    with sv.checking(ops=True):
        assert known_names(torch.einsum("abc->bac", x)) == ("T", "bs", "F")
        assert known_names(torch.einsum("btd,de->bte", x, torch.randn(2, 5))) == ("bs", "T", None)
        with pytest.raises(sv.ShapeError, match="scrambled_view"):
            nn.GRU(2, 4, batch_first=True)(torch.einsum("abc->bac", x).reshape(3, 4, 2))
        with pytest.raises(sv.ShapeError, match="batch_first_swap"):
            nn.GRU(2, 4)(torch.einsum("abc->bac", torch.einsum("abc->bac", x)))
        with no_warnings():
            nn.GRU(2, 4)(torch.einsum("btf->tbf", x))  # right: (T, bs, F) for a seq-first layer
