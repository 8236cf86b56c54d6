"""Traces and pictures that tell the truth (list states, loop counts, captions and edges of
decoders, hand-written loops). Small models of our own; names asserted row by row, captions and edges
by their DOT text.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from shapeviz._errors import SpecError
from shapeviz.render.unrolled import unroll
from shapeviz.tracing.session import trace


def io(call, which: str = "inputs") -> list[tuple[str, tuple[int, ...], tuple[str, ...] | None]]:
    return [(i.role, i.shape, i.names) for i in getattr(call, which)]


# ------------------------------------------------------------------ item 5: a list state
class ListStateLM(nn.Module):
    """A language model driven like a training loop: its state comes back as a list ``[h, c]``."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor, tuple]:
        return self.lstm(x, state)


def test_list_state_lists_h0_and_c0():
    h = [torch.zeros(1, 2, 8), torch.zeros(1, 2, 8)]  # [s.detach() for s in state]: a list
    t = trace(ListStateLM(), torch.zeros(2, 5, 4), h)
    lstm = t.find(path="lstm")[0]
    assert io(lstm) == [("input", (2, 5, 4), ("bs", "T", "emb")),
                        ("h_0", (1, 2, 8), ("layers*D", "bs", "h")),
                        ("c_0", (1, 2, 8), ("layers*D", "bs", "h"))]
    assert [i.repeat for i in lstm.inputs] == [1, 1, 1]
    row = next(r for r in t.table().splitlines() if "lstm (LSTM)" in r)
    assert "h_0 (layers*D=1, bs=2, h=8), c_0 (layers*D=1, bs=2, h=8) → output" in row


def test_tuple_and_list_states_read_alike():
    x = torch.zeros(2, 5, 4)
    as_list = trace(ListStateLM(), x, [torch.zeros(1, 2, 8), torch.zeros(1, 2, 8)]).find(path="lstm")[0]
    as_tuple = trace(ListStateLM(), x, (torch.zeros(1, 2, 8), torch.zeros(1, 2, 8))).find(path="lstm")[0]
    assert io(as_list) == io(as_tuple)


# ------------------------------------------------------------------ item 3: loop counts need evidence
class GreedyDecoder(nn.Module):
    """An encoder GRU over the source, then a GRUCell fed its own argmax for ``steps`` steps."""

    def __init__(self, vocab: int = 11, emb: int = 4, hidden: int = 6, steps: int = 9) -> None:
        super().__init__()
        self.steps = steps
        self.embed = nn.Embedding(vocab, emb)
        self.encoder = nn.GRU(emb, hidden)
        self.cell = nn.GRUCell(emb, hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, src: torch.Tensor) -> torch.Tensor:  # src (T, bs) token ids
        _, h_n = self.encoder(self.embed(src))
        h = h_n[-1]  # (bs, h)
        tok = torch.zeros(src.shape[1], dtype=torch.long)
        outs = []
        for _ in range(self.steps):
            h = self.cell(self.embed(tok), h)
            logits = self.out(h)
            tok = logits.argmax(-1)
            outs.append(logits)
        return torch.stack(outs)


class DataLoop(nn.Module):
    """A GRUCell over the input's time steps, read as ``x[t]``."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, bs, emb)
        h = torch.zeros(x.shape[1], 6)
        for t in range(x.shape[0]):
            h = self.cell(x[t], h)
        return h


def marks(table: str) -> list[str]:
    return [m for m in ("× T=9", "× 9", "× 7", "× T=7", "× T=5", "× 5", "× 4") if m in table]


def test_greedy_steps_equal_to_the_source_length_are_not_named_T():
    src = torch.randint(0, 11, (9, 2))
    for ops in (False, True):
        table = trace(GreedyDecoder(steps=9), src, ops=ops, inputs_dims="T bs").table()
        assert "× T=9" not in table and "× 9" in table, table
        table7 = trace(GreedyDecoder(steps=7), src, ops=ops, inputs_dims="T bs").table()
        assert "× T=7" not in table7 and "× 7" in table7


class StartsFromTheSource(nn.Module):
    """A greedy decoder whose first step reads ``tok[:, 0]`` of the source (a step of its T), the others their own
    argmax: its loop iterates no dim of the source, whatever its step count."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.emb, self.gru, self.out = nn.Embedding(20, 6), nn.GRU(6, 8), nn.Linear(8, 20)

    def forward(self, tok: torch.Tensor) -> torch.Tensor:  # (bs, T)
        _, h = self.gru(self.emb(tok.t()))
        inp, outs = tok[:, 0], []
        for _ in range(self.steps):
            y, h = self.gru(self.emb(inp).unsqueeze(0), h)
            logits = self.out(y[0])
            inp = logits.argmax(-1)
            outs.append(logits)
        return torch.stack(outs, 1)


@pytest.mark.parametrize("ops", [False, True])
def test_a_decoder_whose_first_step_reads_a_source_step_is_not_named_T(ops: bool) -> None:
    t = trace(StartsFromTheSource(4), torch.randint(0, 20, (3, 4)), inputs_dims="bs T", ops=ops)
    assert "× T=4" not in t.table() and "× 4" in t.table()


def test_a_loop_that_indexes_T_is_named_T():
    for ops in (False, True):
        t = trace(DataLoop(), torch.zeros(5, 2, 4), ops=ops, inputs_dims="T bs emb")
        assert "× T=5" in t.table()
        cell = t.find(path="cell")[0]
        assert cell.inputs[0].step == ("T", 5)
    # a guessed T (no inputs_dims: T only by size) is no evidence; nor is a loop over 4 of 5 steps
    assert "× T=5" not in trace(DataLoop(), torch.zeros(5, 2, 4)).table()


def test_unbind_and_split_are_steps_of_T():
    cell = nn.GRUCell(4, 6)

    def by_iter(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        for x_t in x:
            h = cell(x_t, h)
        return h

    def by_split(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:  # (bs, T, emb) split into (bs, 1, emb)
        for x_t in x.split(1, dim=1):
            h = cell(x_t.squeeze(1), h)
        return h

    h = torch.zeros(2, 6)
    assert "× T=5" in trace(by_iter, torch.zeros(5, 2, 4), h, inputs_dims="T bs emb").table()
    assert "× T=5" in trace(by_split, torch.zeros(2, 5, 4), h, inputs_dims="bs T emb", ops=True).table()


def test_step_survives_json():
    from shapeviz.tracing.records import Trace

    t = trace(DataLoop(), torch.zeros(5, 2, 4), inputs_dims="T bs emb")
    back = Trace.from_json(t.to_json())
    assert back == t and back.find(path="cell")[0].inputs[0].step == ("T", 5)


# ------------------------------------------------------------------ item 4: fed-back edges say what they are
class BeamSearch(nn.Module):
    """A GRUCell decoder run with beam search: batch bs*k, topk over k*vocab, index_select of h by beam,
    integer division of the indices; older-style ``.data`` and a token buffer written in place."""

    def __init__(self, vocab: int = 13, emb: int = 4, hidden: int = 8, k: int = 3, steps: int = 6) -> None:
        super().__init__()
        self.k, self.steps, self.vocab = k, steps, vocab
        self.embed = nn.Embedding(vocab, emb)
        self.encoder = nn.GRU(emb, hidden)
        self.cell = nn.GRUCell(emb, hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, src: torch.Tensor) -> torch.Tensor:  # (T, bs)
        bs, k, V = src.shape[1], self.k, self.vocab
        _, h_n = self.encoder(self.embed(src))
        h = h_n[-1].unsqueeze(1).expand(-1, k, -1).reshape(bs * k, -1)  # (bs*k, h)
        tokens = torch.zeros(bs * k, self.steps + 1, dtype=torch.long)
        scores = torch.zeros(bs * k, 1)
        for t in range(self.steps):
            h = self.cell(self.embed(tokens[:, t]), h)
            logp = self.out(h).log_softmax(-1).data
            top, cand = (scores + logp).view(bs, -1).topk(k, dim=1)  # (bs, k) of k*V candidates
            scores = top.view(-1, 1)
            beam = torch.div(cand, V, rounding_mode="floor") + (torch.arange(bs) * k).unsqueeze(1)
            h = h.index_select(0, beam.view(-1))
            tokens = tokens.gather(0, beam.view(-1, 1).repeat(1, tokens.shape[1]))
            tokens[:, t + 1] = (cand % V).view(-1)
        return tokens


class TeacherAttention(nn.Module):
    """A teacher-forced GRUCell decoder whose input is [embedded target token; attention over h_prev]."""

    def __init__(self, vocab: int = 13, emb: int = 4, hidden: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        self.encoder = nn.GRU(emb, hidden)
        self.cell = nn.GRUCell(emb + hidden, hidden)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:  # (T, bs), (T_tgt, bs)
        enc, h_n = self.encoder(self.embed(src))  # (T, bs, h)
        h = h_n[0]
        for t in range(tgt.shape[0]):
            weights = torch.softmax((enc * h.unsqueeze(0)).sum(-1), dim=0)  # (T, bs): reads h
            context = (weights.unsqueeze(-1) * enc).sum(0)  # (bs, h)
            h = self.cell(torch.cat([self.embed(tgt[t]), context], -1), h)
        return h


def caption(src: str, panel: str) -> str:
    return next(line.strip() for line in src.splitlines() if line.strip().startswith("label=<" + panel))


def fed_edges(src: str, prefix: str = "p1_") -> list[str]:
    return [line.strip() for line in src.splitlines() if "#b03a2e" in line and line.strip().startswith(prefix + "y_")]


def test_beam_search_is_fed_back_at_every_step():
    for ops in (False, True):
        t = trace(BeamSearch(), torch.randint(0, 13, (7, 2)), inputs_dims="T bs", ops=ops)
        src = unroll(t).source
        head = caption(src, "cell")
        assert "6 calls, bs=6" in head and "T=6" not in head
        assert "red dashed &#x27;token&#x27;: 5 of 6 steps take a token chosen from the previous step" in head
        assert "greedy" not in head and "not from a step" not in src.split("p1_x_1")[1].split("\n")[0]
        edges = fed_edges(src)
        assert len(edges) == 5 and all(" label=token " in e for e in edges)  # 6 columns drawn: 0-1 … 4-5


def test_teacher_forced_attention_is_not_greedy():
    src_tokens, tgt = torch.randint(0, 13, (7, 2)), torch.randint(0, 13, (5, 2))
    for ops in (False, True):
        src = unroll(trace(TeacherAttention(), src_tokens, tgt, inputs_dims="T bs", ops=ops)).source
        head = caption(src, "cell")
        assert "greedy" not in head and "a token" not in head
        assert "red dashed &#x27;h&#x27;: 4 of 5 steps take an input computed from the previous step&#x27;s h " \
               "with no integer tensor between" in head
        edges = fed_edges(src)
        assert len(edges) == 4 and all(" label=h " in e for e in edges)
        assert "from step 0&#x27;s h (no token)" in src


def test_an_unnamed_loop_beside_another_T_is_not_named_T():
    src = unroll(trace(TeacherAttention(), torch.randint(0, 13, (7, 2)), torch.randint(0, 13, (5, 2)),
                       inputs_dims="T bs")).source
    assert "encoder: GRU(4, 8)   unrolled over time: T=7, bs=2" in src
    assert "cell: GRUCell(12, 8)   unrolled over time: 5 calls, bs=2" in src  # tgt's length is not the source's T


# ------------------------------------------------------------------ item 4: handoffs through a reshape
class JoinDirections(nn.Module):
    """A bidirectional 2-layer encoder; the decoder (2 layers, D*h) starts from h_n's directions side by
    side per layer: (layers*D, bs, h) -> (layers, bs, D*h), by cat of the even and odd rows."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.LSTM(4, 5, num_layers=2, bidirectional=True)
        self.decoder = nn.LSTM(4, 10, num_layers=2)

    @staticmethod
    def join(s: torch.Tensor) -> torch.Tensor:
        return torch.cat([s[0:s.size(0):2], s[1:s.size(0):2]], 2)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        _, (h, c) = self.encoder(src)
        return self.decoder(tgt, (self.join(h), self.join(c)))[0]


class SumDirections(nn.Module):
    """Two bidirectional GRU layers; between them the directions are summed through a view (2h -> h)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.GRU(4, 8, bidirectional=True)
        self.layer2 = nn.GRU(8, 8, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, bs = x.shape[:2]
        y, _ = self.layer1(x)
        return self.layer2(y.view(T, bs, 2, 8).sum(2))[0]


def test_handoff_through_a_join_of_directions_is_drawn_with_the_reshape():
    for ops, via in ((False, ""), (True, "\\n→ getitem, cat")):
        src = unroll(trace(JoinDirections(), torch.zeros(7, 3, 4), torch.zeros(5, 3, 4), ops=ops)).source
        handoff = [line for line in src.splitlines() if line.startswith("\tp0_l1f_r:h:e -> p1_l0f_l:h:w")]
        assert handoff == ['\tp0_l1f_r:h:e -> p1_l0f_l:h:w [color="#6b6b6b" penwidth=1.6 minlen=3 '
                           f'label="h_n (layers*D=4, bs=3, h=5){via}\\n→ h_0 (layers*D=2, bs=3, h=10)" '
                           'fontsize=10 fontcolor="#6b6b6b"]']
        assert "\t{\n\t\trank=same\n\t\tp0_l1f_r\n\t\tp1_l0f_l\n\t}\n" in src  # on one rank, at the top level
        assert "h_0 computed from h_n of encoder" in src


def test_directions_summed_between_layers_show_the_sum_on_the_edge():
    for ops, via in ((False, ""), (True, "\\n→ view, sum")):
        src = unroll(trace(SumDirections(), torch.zeros(5, 2, 4), inputs_dims="T bs emb", ops=ops)).source
        first = [line for line in src.splitlines() if line.startswith("\tp1_x_0 -> p0_y_0")]
        assert first == ['\tp1_x_0 -> p0_y_0 [dir=back color="#6b6b6b" penwidth=1.2 label="output (T=5, bs=2, D*h=16)'
                         f'{via}\\n→ input (T=5, bs=2, 8)" fontsize=10 fontcolor="#6b6b6b"]']  # 8 is no declared emb=4
        assert '\tp1_x_1 -> p0_y_1 [dir=back color="#6b6b6b" penwidth=1.2]\n' in src  # said once


# ------------------------------------------------------------------ item 6: a char-RNN of nn.Linear layers
class LinearCharRNN(nn.Module):
    """The classic tutorial's RNN: i2h and i2o on cat(input, hidden); one call per character."""

    def __init__(self, n_in: int = 57, hidden: int = 128, n_out: int = 18) -> None:
        super().__init__()
        self.i2h = nn.Linear(n_in + hidden, hidden)
        self.i2o = nn.Linear(n_in + hidden, n_out)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        combined = torch.cat((x, hidden), 1)
        return self.softmax(self.i2o(combined)), self.i2h(combined)


class ClassifyName(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = LinearCharRNN()

    def forward(self, line: torch.Tensor) -> torch.Tensor:  # (chars, 1, n_letters)
        hidden = torch.zeros(1, 128)
        for i in range(line.size(0)):
            output, hidden = self.rnn(line[i], hidden)
        return output


class PerStep(nn.Module):
    """A Linear applied to each step on its own: steps repeat, but nothing is carried between them."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.lin(x[t]) for t in range(x.shape[0])]


def test_linear_char_rnn_loop_is_drawn():
    import inspect

    lines, first = inspect.getsourcelines(ClassifyName.forward)
    at = first + next(i for i, line in enumerate(lines) if "self.rnn(line[i], hidden)" in line)
    for ops in (True, False):
        src = unroll(trace(ClassifyName(), torch.zeros(6, 1, 57), ops=ops)).source
        head = caption(src, "hand-written")
        assert f"hand-written loop at test_unroll_truth.py:{at} (drawn as one cell)" in head
        assert "unrolled over time: T=6, bs=1" in head  # it reads line[i]: one step of line's dim 0 each time
        assert "each step: input (1, 57), state h (bs=1, h=128), output (1, 18)" in head
        assert src.count("RNNCell  t=") == 6 and "l0f_5:h:e -> l0f_r:h:w" in src  # the state carried on


def test_a_trace_without_a_drawable_loop_says_why_in_one_line():
    with pytest.raises(SpecError) as e:
        unroll(trace(nn.Linear(4, 3), torch.zeros(2, 4), ops=True))
    assert "no step repeats" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SpecError) as e:
        unroll(trace(PerStep(), torch.zeros(5, 2, 4), ops=True))
    assert "the 5 repeated steps hand no (bs, h) state from one step to the next" in str(e.value)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ a wrapper that calls module.forward itself
class WeightDrop(nn.Module):
    """AWD-LSTM's wrapper: it sets the weights, then calls ``self.module.forward`` (no hooks run)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: torch.Tensor) -> tuple:
        return self.module.forward(*args)


class AWDLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnns = nn.ModuleList([WeightDrop(nn.LSTM(4, 6)), WeightDrop(nn.LSTM(6, 4))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for rnn in self.rnns:
            x, _ = rnn(x)
        return x


def test_a_forward_called_directly_is_recorded():
    model = AWDLike()
    for ops in (False, True):
        t = trace(model, torch.zeros(5, 2, 4), ops=ops)
        lstms = [c for c in t.calls if c.type == "LSTM"]
        assert [c.path for c in lstms] == ["rnns.0.module", "rnns.1.module"]
        assert io(lstms[1]) == [("input", (5, 2, 6), ("T", "bs", "emb"))]
        assert io(lstms[1], "outputs")[0] == ("output", (5, 2, 4), ("T", "bs", "D*h"))
        src = unroll(t).source
        assert "rnns.0.module: LSTM(4, 6)   unrolled over time: T=5, bs=2" in src
        assert "rnns.1.module: LSTM(6, 4)   unrolled over time: T=5, bs=2" in src
    assert all("forward" not in m.__dict__ for m in model.modules())  # put back
    hooked = trace(nn.Sequential(WeightDrop(nn.GRU(4, 6))), torch.zeros(5, 2, 4))
    assert [c.type for c in hooked.calls] == ["Sequential", "WeightDrop", "GRU"]  # recorded once


def test_a_direct_forward_that_raises_is_closed_and_put_back():
    model = WeightDrop(nn.GRU(4, 6))
    with pytest.raises(RuntimeError) as e:
        trace(model, torch.zeros(5, 2, 3))
    assert "forward" not in model.module.__dict__
    partial = e.value.shapeviz_trace  # type: ignore[attr-defined]
    assert [c.type for c in partial.calls][:2] == ["WeightDrop", "GRU"] and partial.calls[1].error


def test_a_trace_from_before_tokens_were_recorded_claims_no_token_and_no_state():
    import json

    from shapeviz.tracing.records import Trace

    t = trace(BeamSearch(), torch.randint(0, 13, (7, 2)), inputs_dims="T bs")
    doc = json.loads(t.to_json())
    for call in doc["calls"]:
        for info in call["inputs"] + call["outputs"]:
            del info["tokens"]
    head = caption(unroll(Trace.from_json(json.dumps(doc))).source, "cell")
    assert "red dashed: 5 of 6 steps take an input computed from the previous step&#x27;s output" in head
    assert "token chosen" not in head and "&#x27;h&#x27;" not in head


def test_seven_steps_are_drawn_whole_eight_collapse_two():
    from shapeviz.render.unrolled import step_columns

    assert [c.t for c in step_columns(7, 6)] == [str(t) for t in range(7)]
    src = unroll(nn.GRU(4, 6), T=7, bs=2).source
    assert "× 1 step" not in src and "t=3<" in src
    assert "× 2 steps" in unroll(nn.GRU(4, 6), T=8, bs=2).source
