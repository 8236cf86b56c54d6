"""dry_run of packed encoders: lengths stay on the CPU as torch requires, or the run stops with a
DryRunError naming the line (never torch's "'lengths' argument should be a 1D CPU int64 tensor")."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import shapeviz as sv

LENGTHS = [5, 3]


class PackedEncoder(nn.Module):
    """Embedding -> pack -> GRU -> pad; ``how`` says how the forward gets its lengths."""

    def __init__(self, how: str, enforce_sorted: bool = False) -> None:
        super().__init__()
        self.how, self.enforce_sorted = how, enforce_sorted
        self.emb = nn.Embedding(20, 8)
        self.rnn = nn.GRU(8, 16, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: object = None) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.emb(x)
        if self.how == "tensor in forward":
            lengths = torch.tensor(LENGTHS)
        elif self.how == "cpu()":
            lengths = lengths.cpu()  # type: ignore[union-attr]
        elif self.how == "computed":
            lengths = (x != 0).sum(1)  # values of a meta tensor: unknown
        packed = pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=self.enforce_sorted)
        y, h_n = self.rnn(packed)
        out, _ = pad_packed_sequence(y, batch_first=True)
        return out, h_n


@pytest.mark.parametrize("enforce_sorted", [False, True])
@pytest.mark.parametrize(("how", "lengths"), [
    ("given", LENGTHS),  # a Python list
    ("given", torch.tensor(LENGTHS)),  # a CPU int64 tensor
    ("given", torch.tensor(LENGTHS, dtype=torch.int32)),
    ("cpu()", torch.tensor(LENGTHS)),
    ("tensor in forward", None),
])
def test_lengths_stay_on_the_cpu(how: str, lengths: object, enforce_sorted: bool) -> None:
    model = PackedEncoder(how, enforce_sorted)
    run = sv.dry_run(model, "bs=2,T=5", lengths)
    assert run.ok
    rnn = run.trace.find(path="rnn")[0]
    assert [i.format() for i in rnn.outputs if i.role == "h_n"] == ["(layers*D=1, bs=2, h=16)"]
    assert run.trace.calls[0].outputs[0].shape == (2, 5, 16)  # padded to the longest length


def test_lengths_the_forward_computes_stop_the_run_at_the_packing_line() -> None:
    with pytest.raises(sv.DryRunError) as info:
        sv.dry_run(PackedEncoder("computed"), "bs=2,T=5")
    err = info.value
    assert "pack_padded_sequence(e, lengths" in err.line and err.function == "in forward"
    assert "lengths' values on the CPU" in str(err)
    assert "should be a 1D CPU int64 tensor" not in str(err)


def test_the_lengths_given_are_left_as_they_were() -> None:
    lengths = torch.tensor(LENGTHS)
    sv.dry_run(PackedEncoder("given"), "bs=2,T=5", lengths)
    assert lengths.device.type == "cpu" and lengths.tolist() == LENGTHS


class PaddedMeanPool(nn.Module):
    """A packed BiLSTM whose padded output is mean-pooled with the lengths pad_packed_sequence returns (on the
    CPU, as torch gives them), by a mask built with ``torch.arange``; the lengths cast to int32 first."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 6, bidirectional=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu().int(), enforce_sorted=False)
        out, lens = nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], total_length=x.size(0))
        mask = torch.arange(x.size(0))[:, None] < lens[None, :]  # (T, bs): CPU code, as written for the CPU
        return (out * mask.unsqueeze(-1)).sum(0) / lens[:, None]


def test_lengths_cast_and_returned_on_the_cpu_dry_run_like_the_real_run() -> None:
    """int32 lengths keep their values for the packing, and ops mixing pad_packed_sequence's CPU lengths with
    meta tensors run on meta (shapes only): the dry run ends ok with the real run's result shape."""
    x, lengths = torch.randn(7, 3, 8), torch.tensor([7, 5, 2])
    model = PaddedMeanPool()
    assert tuple(model(x, lengths).shape) == (3, 12)
    run = sv.dry_run(model, x, lengths)
    assert run.ok, run
    assert run.trace is not None and tuple(run.trace.calls[0].outputs[0].shape) == (3, 12), run.trace
