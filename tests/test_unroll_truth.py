"""Issue 21: traces and pictures that tell the truth (list states, loop counts, captions and edges of
decoders, hand-written loops). Small models of our own; names asserted row by row, captions and edges
by their DOT text.
"""

from __future__ import annotations

import torch
import torch.nn as nn

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
