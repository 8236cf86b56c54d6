"""Wrong names users found in ``sv.trace`` output: a name needs evidence, and a size that contradicts a declared
size, or the names the tensor's producer gave it, is never printed under that name."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import shapeviz as sv
from shapeviz.tracing.naming import BY_SIZE, How, Namer, OpView, Resolver, unname_contradicted
from shapeviz.tracing.records import Call, TensorInfo


def _keep_leading(op: OpView) -> list[str | None]:
    return [*op.names(0)[:-1], None]


# ---------------------------------------------------------------- 1. the producer's evidence wins
def test_the_producers_evidence_wins_over_the_next_layers_reading() -> None:
    x = TensorInfo((4, 5, 3), ("bs", "T", "emb"), origins=("inputs_dims",) * 3)
    out = TensorInfo((4, 5, 3))  # a Linear's result, then read by a seq-first GRU as (T, bs, emb)
    how = How.filled(How.by_rule(_keep_leading, [x], "module fc"), ("T", "bs", "emb"), "conventions of rnn")
    Resolver(Namer({"bs": 4, "T": 5, "emb": 3}, {}), {id(out): (out, how)}).resolve(out)
    assert out.names == ("bs", "T", "emb")
    assert out.origins == ("module fc", "module fc", "conventions of rnn")


def test_the_next_layers_conventions_name_what_the_producer_cannot() -> None:
    out = TensorInfo((5, 4, 3))  # nothing but its sizes names it: the GRU's conventions do
    how = How.filled(BY_SIZE, ("T", "bs", "emb"), "conventions of rnn")
    Resolver(Namer({}, {}), {id(out): (out, how)}).resolve(out)
    assert out.names == ("T", "bs", "emb")


def test_a_layers_reading_that_contradicts_the_declared_sizes_is_unnamed() -> None:
    x = TensorInfo((4, 5, 3), ("T", "bs", "emb"), origins=("conventions of rnn",) * 3)
    unname_contradicted(Call(0, "rnn", "GRU", "module", inputs=[x]), Namer({"bs": 4, "T": 5}, {}))
    assert x.format() == "(4, 5, emb=3)"
    seq2seq = TensorInfo((6, 4, 3), ("T", "bs", "emb"))  # a decoder's 6 steps: not the model's declared T=9
    unname_contradicted(Call(0, "dec", "GRU", "module", inputs=[seq2seq]), Namer({"bs": 4, "T": 9}, {}))
    assert seq2seq.names == ("", "bs", "emb")
    step = TensorInfo((1, 4, 3), ("T", "bs", "emb"))  # one step of T, a decoder's loop
    unname_contradicted(Call(0, "dec", "GRU", "module", inputs=[step]), Namer({"bs": 4, "T": 9}, {}))
    assert step.names == ("T", "bs", "emb")
    frames = TensorInfo((36, 1, 3), ("bs*T", "T", "emb"))  # every step a sequence of one: T is already dim 0's
    unname_contradicted(Call(0, "enc", "GRU", "module", inputs=[frames]), Namer({"bs": 4, "T": 9}, {}))
    assert frames.names == ("bs*T", "", "emb")


def test_a_linear_keeps_its_inputs_names_when_a_gru_reads_them_swapped() -> None:
    t = sv.trace(nn.Sequential(nn.Linear(3, 3), nn.GRU(3, 8)), torch.randn(4, 5, 3), inputs_dims="bs T emb")
    lin, gru = t.calls[1], t.calls[2]
    assert lin.outputs[0].format() == "(bs=4, T=5, emb=3)"
    assert gru.inputs[0].format() == "(bs=4, T=5, emb=3)"
    assert "T=4" not in t.table() and "bs=5" not in t.table()


class _Halved(nn.Module):
    """A conv halves the steps; the GRU runs over T/2 steps, then the steps are doubled back two ways."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 2, stride=2)
        self.gru = nn.GRU(4, 6, batch_first=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (bs, T, feat)
        out, _ = self.gru(self.conv(x.transpose(1, 2)).transpose(1, 2))  # (bs, T/2, h)
        return out.repeat_interleave(2, dim=1), torch.cat([out, out], dim=1)  # each (bs, T, h), neither T by evidence


def test_a_layers_time_of_another_length_than_the_declared_t_is_not_named_t() -> None:
    t = sv.trace(_Halved(), torch.randn(3, 10, 4), inputs_dims="bs T feat", ops=True)
    gru = t.find(path="gru")[0]
    assert gru.inputs[0].format() == "(bs=3, 5, emb=4)"  # 5 steps: not the declared T=10
    for op in ("repeat_interleave", "cat"):
        [call] = t.find(type=op)
        assert call.outputs[0].names[1] in ("", "T?"), call.outputs[0].format()
    assert "T=5" not in t.table() and "T*2" not in t.table()


# ---------------------------------------------------------------- 2. cat of one-step pieces
class _Steps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(3, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (T, emb): one unbatched call per step
        return torch.cat([self.rnn(x[t:t + 1])[0] for t in range(x.shape[0])])


def test_a_cat_of_one_step_sequences_is_the_time_axis_not_t_times_t() -> None:
    t = sv.trace(_Steps(), torch.zeros(4, 3), inputs_dims="T emb", ops=True)
    [cat] = t.find(type="cat")
    assert cat.outputs[0].names[0] == "T?" and cat.outputs[0].shape[0] == 4  # as many one-step pieces as T: a guess
    assert "T*T" not in t.table()  # (a decoder's horizon of as many steps is no T: DeepAR's P == T)


# ---------------------------------------------------------------- 3. a guess lists every name of its size
class _Pool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[1][-1]  # (bs, h)


def test_a_guess_by_position_lists_every_name_its_size_matches() -> None:
    t = sv.trace(nn.Sequential(_Pool()), torch.zeros(4, 4, 3), inputs_dims="T bs emb")
    pool = t.find(path="0")[0]
    assert pool.outputs[0].names[0] == "T|bs?" and pool.outputs[0].ambiguous


# ---------------------------------------------------------------- 4. a beam's merged batch
class _Beam(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # x (T, bs, emb)
        _, h = self.rnn(x)
        scores = torch.zeros(x.shape[1], 2)
        return h.repeat_interleave(2, dim=1), scores.view(-1, 1)


def test_repeat_interleave_names_the_merged_batch_and_a_flattened_size_is_not_guessed() -> None:
    t = sv.trace(_Beam(), torch.zeros(6, 3, 3), inputs_dims="T bs emb", ops=True)
    [rep] = t.find(type="repeat_interleave")
    assert rep.outputs[0].format() == "(layers*D=1, bs*2=6, h=5)"
    [view] = t.find(type="view")
    assert view.outputs[0].format() == "(6, 1)"  # bs*2, not the T?=6 its size matches


# ---------------------------------------------------------------- 5. a merged batch is not bs
class _Docs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 4)
        self.words = nn.GRU(4, 6, batch_first=True)

    def forward(self, docs: torch.Tensor) -> torch.Tensor:  # (bs, S, W)
        bs, s, w = docs.shape
        _, h = self.words(self.emb(docs.view(bs * s, w)))
        return h[-1]  # (bs*S, h)


def test_a_merged_batch_read_as_bs_is_not_named_bs() -> None:
    t = sv.trace(_Docs(), torch.zeros(2, 3, 5, dtype=torch.long), inputs_dims="bs S W", ops=True)
    [pick] = t.find(type="__getitem__")
    assert pick.outputs[0].format() == "(bs*S=6, h=6)"  # not bs=6 (bs=2 is declared): the GRU's input's bs*S
    without_ops = sv.trace(_Docs(), torch.zeros(2, 3, 5, dtype=torch.long), inputs_dims="bs S W")
    assert "bs=6" not in str(without_ops), without_ops


def test_namer_contradictions() -> None:
    namer = Namer({"bs": 2, "T": 7}, {})
    # a layer whose batch is not the model's (6 = bs*3: words of a char model, agents merged) reads steps that
    # are the model's T by size alone (a word's 7 chars)
    assert namer.contradicted(["bs", "T"], (6, 7)) == {0, 1}
    assert namer.contradicted(["T", "bs"], (2, 7)) == {0, 1}
    assert namer.contradicted(["T", "bs"], (5, 2)) == {0}  # 5 steps are not the declared T=7
    assert namer.contradicted(["T", "bs"], (7, 2)) == set() == namer.contradicted(["T", "bs"], (1, 2))
    assert Namer({}, {}).contradicted(["bs"], (6,)) == set()


class _CharWords(nn.Module):
    """A char LSTM over each word's L characters: ``(bs*T, L, c)``, its batch the words, its steps the chars."""

    def __init__(self) -> None:
        super().__init__()
        self.ce, self.clstm = nn.Embedding(20, 8), nn.LSTM(8, 8, batch_first=True)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:  # (bs, T, L)
        bs, T, L = chars.shape
        return self.clstm(self.ce(chars.view(-1, L)))[1][0].squeeze(0).view(bs, T, -1)


@pytest.mark.parametrize("ops", [False, True])
def test_a_char_lstms_steps_are_not_named_T_where_their_count_equals_it(ops: bool) -> None:
    """L == T == 3: the char LSTM's time was printed ``T=3`` (no ``?``) by its size alone; its batch, bs*T
    words, is not the model's bs, so its steps are not the model's T either."""
    t = sv.trace(_CharWords(), torch.randint(0, 20, (2, 3, 3)), inputs_dims="bs T", ops=ops)
    [call] = [c for c in t.calls if c.type == "LSTM"]
    assert call.inputs[0].shape == (6, 3, 8)
    assert "T" not in (call.inputs[0].names or ())[:2], call.describe()
    assert "T" not in (call.outputs[0].names or ())[:2], call.describe()


def test_a_new_tensor_of_the_same_sizes_is_not_named_like_its_source() -> None:
    """``x.new_zeros(layers, bs, h)`` takes only x's dtype and device: with layers == T and h == emb its sizes match
    x's dims, which is no evidence; its dims are at most guesses."""
    class Stacked(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.new_zeros(3, x.shape[1], 6)

    t = sv.trace(Stacked(), torch.randn(3, 4, 6), inputs_dims="T bs emb", ops=True)
    [new] = [c for c in t.calls if c.type == "new_zeros"]
    assert all(n == "" or n.endswith("?") for n in new.outputs[0].names or ()), new.describe()


# ---------------------------------------------------------------- 6. a count of pieces is not a name by its size
class _Counts(nn.Module):
    """A query's J positions stacked (J == h), both directions' final states joined (2 == bs), decoded steps
    stacked (max_len == h): each new dim counts pieces, whatever size it shares."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.GRU(4, 5, batch_first=True, bidirectional=True)

    def forward(self, c: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cq, _ = self.enc(c)
        qq, h_n = self.enc(q)
        sim = torch.stack([(cq * qq[:, j:j + 1]).sum(-1) for j in range(q.shape[1])], dim=-1)  # (bs, T, J)
        both = torch.cat((h_n[-2], h_n[-1]), dim=1)  # (bs, D*h)
        tokens = torch.stack([both.argmax(-1) for _ in range(5)], dim=-1)  # (bs, max_len=5)
        return sim, both, tokens


def test_counts_of_pieces_are_not_named_by_their_size() -> None:
    t = sv.trace(_Counts(), torch.randn(2, 10, 4), torch.randn(2, 5, 4), ops=True, inputs_dims="bs T")
    sim, tokens = t.find(type="stack")
    assert sim.outputs[0].names[2] in ("", "h?", "T|h?", "h|T?"), sim.outputs[0]  # J: never h as evidence
    assert not tokens.outputs[0].names[1] or tokens.outputs[0].names[1].endswith("?"), tokens.outputs[0]
    [both] = [c for c in t.find(type="cat") if c.outputs[0].shape == (2, 10)]
    assert both.outputs[0].names[1] in ("", "D*h"), both.outputs[0]  # 2 directions, not bs*h


def test_expand_repeat_and_split_keep_the_dims_they_keep_and_guess_no_size_one() -> None:
    """A beam search tiling a GRU state with ``expand``, a ConvLSTM cutting its gates with ``split`` at bs=1: the dims
    those ops keep keep their names (a size-1 dim included: it is the input's), and a size-1 dim is never named by
    its size (before, each came out as a guess by size: ``layers*D?``, ``bs|T?``)."""

    class Tile(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.GRU(6, 6)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            _, h = self.enc(x)  # (1, bs, 6)
            L, bs, H = h.shape
            return h.unsqueeze(2).expand(L, bs, 3, H), h.repeat(1, 1, 2), *torch.split(h, 2, dim=2)

    class Gates(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 12, 3, padding=1)

        def forward(self, video: torch.Tensor) -> torch.Tensor:  # (bs, T, C, H, W)
            i, *_ = torch.split(self.conv(video[:, 0]), 3, dim=1)  # the gates i, f, o, g
            return i

    t = sv.trace(Tile(), torch.randn(4, 3, 6), ops=True, inputs_dims="T bs emb")
    named = {c.type: c.outputs[0] for c in t.calls if c.type in ("expand", "repeat", "split")}
    assert named["expand"].names[:2] == ("layers*D", "bs") and named["expand"].names[3] == "h"
    assert not named["expand"].names[2] or named["expand"].names[2].endswith("?")  # the beam of 3: at most a guess
    assert named["repeat"].names[:2] == ("layers*D", "bs") and named["repeat"].names[2] in ("", "h*2")
    assert named["split"].names[:2] == ("layers*D", "bs") and not named["split"].names[2]
    t = sv.trace(Gates(), torch.randn(1, 1, 2, 5, 5), ops=True, inputs_dims="bs T")
    (split,) = [c for c in t.calls if c.type == "split"]
    assert split.outputs[0].names[0] == "bs" and split.outputs[0].origins[0] == "op split"
    for c in t.calls:  # a size of 1 proves nothing: never a name by size
        for o in c.outputs:
            for n, s, origin in zip(o.names or (), o.shape, o.origins or ()):
                assert not (s == 1 and n and "guess" in origin), (c.type, o.names, o.origins)


def test_arguments_passed_through_star_args_are_labelled_by_their_place_in_it() -> None:
    """``forward(self, *args)`` called ``(x, (h, c))``: ``args[0]``, ``args[1][0]``, ``args[1][1]`` (before: ``args``,
    ``args[0]``, ``args[1]``, which named x's place as h's)."""

    class Star(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.g = nn.LSTM(4, 5)

        def forward(self, *args: torch.Tensor) -> tuple:
            return self.g(*args)

    class Rest(Star):
        def forward(self, x: torch.Tensor, *rest: tuple) -> tuple:  # type: ignore[override]
            return self.g(x, *rest)

    x, h, c = torch.randn(6, 3, 4), torch.zeros(1, 3, 5), torch.zeros(1, 3, 5)
    assert [i.label for i in sv.trace(Star(), x, (h, c)).calls[0].inputs] == ["args[0]", "args[1][0]", "args[1][1]"]
    assert [i.label for i in sv.trace(Rest(), x, (h, c)).calls[0].inputs] == ["x", "rest[0][0]", "rest[0][1]"]


def test_movedim_rot90_and_einsum_name_the_dims_they_move() -> None:
    """Names follow the dims through movedim/moveaxis, an odd rot90 (a swap), and einsum read from its equation's
    letters (``...`` counted from the right, an implicit output in alphabetical order); as_strided names none."""

    class Moves(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # (bs, T, emb) = (3, 5, 4)
            return (x.movedim((0, 2), (2, 0)), x.moveaxis(0, -1), torch.rot90(x, 3, (1, 2)), torch.rot90(x, 2, (0, 1)),
                    torch.einsum("btd->tbd", x), torch.einsum("...td->...dt", x), torch.einsum("b...->...b", x),
                    torch.einsum("btd", x), torch.einsum("btd,btd->tb", x, x), x.as_strided((5, 3, 4), (4, 20, 1)))

    t = sv.trace(Moves(), torch.randn(3, 5, 4), ops=True, inputs_dims="bs T emb")
    got = [(c.type, tuple(n.rstrip("?") if not n.endswith("?") else "" for n in c.outputs[0].names))
           for c in t.calls if c.kind == "op"]
    assert got == [("movedim", ("emb", "T", "bs")), ("moveaxis", ("T", "emb", "bs")), ("rot90", ("bs", "emb", "T")),
                   ("rot90", ("bs", "T", "emb")), ("einsum", ("T", "bs", "emb")), ("einsum", ("bs", "emb", "T")),
                   ("einsum", ("T", "emb", "bs")), ("einsum", ("bs", "emb", "T")), ("einsum", ("T", "bs")),
                   ("as_strided", ("", "", ""))], got


def test_narrow_index_select_pad_interpolate_unflatten_and_unfold_keep_the_dims_they_leave() -> None:
    """A dim these ops leave as it was keeps its name as evidence (not a ``?`` guess by size); the dim they cut,
    pick along, pad, resize, split or window has none."""

    class Cuts(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # (bs, T, emb) = (3, 5, 4)
            return (x.narrow(1, 1, 2), torch.index_select(x, 0, torch.tensor([2, 0])), F.pad(x, (0, 0, 2, 1)),
                    F.interpolate(x.transpose(1, 2), scale_factor=2), x.unflatten(2, (2, 2)), x.unfold(1, 2, 1))

    t = sv.trace(Cuts(), torch.randn(3, 5, 4), ops=True, inputs_dims="bs T emb")
    got = [(c.type, tuple("" if n.endswith("?") else n for n in c.outputs[0].names), c.outputs[0].shape)
           for c in t.calls if c.kind == "op" and c.type != "tensor"]
    assert got == [("narrow", ("bs", "", "emb"), (3, 2, 4)), ("index_select", ("", "T", "emb"), (2, 5, 4)),
                   ("pad", ("bs", "", "emb"), (3, 8, 4)), ("transpose", ("bs", "emb", "T"), (3, 4, 5)),
                   ("interpolate", ("bs", "emb", ""), (3, 4, 10)), ("unflatten", ("bs", "T", "", ""), (3, 5, 2, 2)),
                   ("unfold", ("bs", "", "emb", ""), (3, 4, 4, 2))], got


def test_a_dataclass_output_is_traced_as_its_tensors() -> None:
    """A model that bundles its results in a dataclass returned "(no tensors)": its fields are recorded as a dict's
    values are (a field that is no tensor is left out)."""
    import dataclasses

    @dataclasses.dataclass
    class Out:
        logits: torch.Tensor
        hidden: torch.Tensor
        note: str = "kept out"

    class Bundles(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(8, 16)

        def forward(self, x: torch.Tensor) -> Out:
            out, h = self.rnn(x)
            return Out(out, h)

    t = sv.trace(Bundles(), torch.randn(7, 3, 8))
    root = t.calls[0]
    assert [(i.shape, i.names) for i in root.outputs] == [((7, 3, 16), ("T", "bs", "D*h")),
                                                          ((1, 3, 16), ("layers*D", "bs", "h"))]
    assert "no tensors" not in str(t)


class _LengthsFirst(nn.LSTM):
    """A subclass whose forward takes ``lengths`` before the state: ``forward(x, lengths=None, hx=None)``."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, hx: object = None) -> object:
        return super().forward(x, hx)


def test_a_subclass_forward_with_its_own_arguments_is_read_by_their_names() -> None:
    """``lengths`` at the state's place was labelled ``h_0``, and the state given as ``hx=`` was left out."""
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l = _LengthsFirst(6, 8, batch_first=True)

        def forward(self, x: torch.Tensor, lengths: torch.Tensor, hc: tuple) -> torch.Tensor:
            return self.l(x, lengths, hx=hc)[0]

    hc = (torch.zeros(1, 3, 8), torch.zeros(1, 3, 8))
    t = sv.trace(M(), torch.randn(3, 5, 6), torch.full((3,), 5), hc)
    [call] = [c for c in t.calls if c.type == "_LengthsFirst"]
    roles = [(i.role, i.shape) for i in call.inputs]
    assert roles[:3] == [("input", (3, 5, 6)), ("h_0", (1, 3, 8)), ("c_0", (1, 3, 8))], roles
    assert [i.label for i in call.inputs[3:]] == ["lengths"] and call.inputs[3].role == "", call.describe()


class _StackedCells(nn.Module):
    """Three GRUCells stacked by hand: the first reads emb=4, the next ones the h=6 below them."""

    def __init__(self) -> None:
        super().__init__()
        self.cells = nn.ModuleList([nn.GRUCell(4 if i == 0 else 6, 6) for i in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, bs, 4)
        hs = [x.new_zeros(x.shape[1], 6) for _ in self.cells]
        for t in range(x.shape[0]):
            inp = x[t]
            for k, cell in enumerate(self.cells):
                hs[k] = inp = cell(inp, hs[k])
        return inp


def test_a_stacked_cells_input_is_not_the_declared_emb() -> None:
    """``inputs_dims="T bs emb"`` declares emb=4; the second and third cells read 6 (the h below): it was printed
    ``emb=6`` beside ``sizes: emb=4``."""
    t = sv.trace(_StackedCells(), torch.randn(3, 2, 4), inputs_dims="T bs emb", ops=True)
    firsts = {c.path: c.inputs[0].format() for c in t.calls if c.type == "GRUCell"}
    assert firsts == {"cells.0": "(bs=2, emb=4)", "cells.1": "(bs=2, 6)", "cells.2": "(bs=2, 6)"}, firsts
