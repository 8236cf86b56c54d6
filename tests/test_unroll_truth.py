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
