"""dry_run and trace on models found by users: scripted submodules, 3-D token ids, a weight drop, one spec per
input, and a vocabulary that equals T*bs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import shapeviz as sv
from shapeviz.runtime.dryrun import dry_run


class ScriptedFront(nn.Module):
    """A scripted projection in front of a GRU: torch refuses hooks on ScriptModules."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.jit.script(nn.Sequential(nn.Linear(3, 4), nn.ReLU()))
        self.gru = nn.GRU(4, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(self.proj(x))[0]


def _hooks(model: nn.Module) -> list[int]:
    return [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()
            if not isinstance(m, torch.jit.ScriptModule)]


def test_a_scripted_submodule_is_left_out_of_the_trace() -> None:
    model = ScriptedFront()
    t = sv.trace(model, torch.zeros(2, 6, 3), inputs_dims="bs T feat")
    assert [c.path for c in t.calls] == ["", "gru"]
    assert t.calls[1].inputs[0].format() == "(bs=2, T=6, emb=4)"
    assert _hooks(model) == [0, 0]
    run = dry_run(model, "bs=2,T=6,feat=3 float")
    assert run.ok and run.trace is not None and [c.path for c in run.trace.calls] == ["", "gru"]
    assert model.proj(torch.ones(1, 3)).device.type == "cpu"  # its weights stayed real


def test_a_scripted_model_traces_as_one_call() -> None:
    scripted = torch.jit.script(nn.Sequential(nn.Linear(3, 4)))
    t = sv.trace(scripted, torch.zeros(2, 3))
    assert [(c.path, c.outputs[0].shape) for c in t.calls] == [("", (2, 4))]


class Documents(nn.Module):
    """(bs, S, W) token ids: sentences of words, the words embedded and run sentence by sentence."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(30, 6)
        self.rnn = nn.GRU(6, 8, batch_first=True)

    def forward(self, docs: torch.Tensor) -> torch.Tensor:
        bs, s, w = docs.shape
        return self.rnn(self.emb(docs.reshape(bs * s, w)))[0]


def test_an_embedding_first_takes_token_ids_of_any_rank() -> None:
    run = dry_run(Documents(), "bs=3,S=5,W=7")
    assert run.ok and run.dtype == torch.int64 and run.input_shape == (3, 5, 7)
    assert run.trace is not None and run.trace.find(path="rnn")[0].inputs[0].shape == (15, 7, 6)


def test_an_error_of_the_model_itself_propagates_with_the_partial_trace() -> None:
    # the documented design: only value reads stop as DryRunError; the model's own errors reach the caller
    with pytest.raises(ValueError, match="not enough values to unpack") as info:
        dry_run(Documents(), "bs=3,W=7")
    assert "shapeviz.trace: the forward pass of Documents raised" in "\n".join(info.value.__notes__)


class WeightDrop(nn.Module):
    """AWD-LSTM's weight drop: ``weight_hh_l0`` no parameter of the LSTM but a plain attribute, set each call."""

    def __init__(self, lstm: nn.LSTM, fail: bool = False) -> None:
        super().__init__()
        self.lstm, self.fail = lstm, fail
        w = lstm.weight_hh_l0
        del lstm.weight_hh_l0
        self.raw = nn.Parameter(w.detach().clone())
        lstm.weight_hh_l0 = w.detach().clone()
        lstm.flatten_parameters = lambda *a, **k: None  # type: ignore[method-assign]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.lstm.weight_hh_l0 = F.dropout(self.raw, 0.5, self.training)  # in eval mode: `raw` itself
        if self.fail:
            raise RuntimeError("the forward fails")
        return self.lstm(x)[0]


def _kind(model: WeightDrop) -> tuple[bool, str, str]:
    held = model.lstm.__dict__.get("weight_hh_l0")
    return "weight_hh_l0" in model.lstm._parameters, type(held).__name__, model.raw.device.type


def test_a_weight_drop_dry_runs_and_is_left_as_it_was() -> None:
    model = WeightDrop(nn.LSTM(5, 7))
    run = dry_run(model, "T=4,bs=3")
    assert run.ok, run
    assert _kind(model) == (False, "Tensor", "cpu")
    model(torch.randn(4, 3, 5))  # still runs, in training mode


def test_a_trace_leaves_a_weight_drop_as_it_was() -> None:
    model = WeightDrop(nn.LSTM(5, 7))
    sv.trace(model, torch.randn(4, 3, 5))  # in eval mode: the forward assigns the raw Parameter
    assert _kind(model) == (False, "Tensor", "cpu")
    model(torch.randn(4, 3, 5))


def test_a_meta_built_weight_drop_and_a_failing_one_are_left_as_they_were() -> None:
    with torch.device("meta"):
        meta = WeightDrop(nn.LSTM(5, 7))
    assert dry_run(meta, "T=4,bs=3").ok
    assert _kind(meta) == (False, "Tensor", "meta")
    failing = WeightDrop(nn.LSTM(5, 7), fail=True)
    with pytest.raises(RuntimeError, match="the forward fails"):
        dry_run(failing, "T=4,bs=3")
    assert _kind(failing) == (False, "Tensor", "cpu")
    assert failing.lstm.weight_hh_l0.device.type == "cpu"


def test_a_weight_drop_registered_by_an_eval_call_dry_runs_as_it_is() -> None:
    model = WeightDrop(nn.LSTM(5, 7))
    model.eval()
    model(torch.randn(4, 3, 5))  # the model's own eval call registered weight_hh_l0 (tied to raw)
    registered = model.lstm._parameters["weight_hh_l0"]
    assert dry_run(model, "T=4,bs=3").ok
    assert model.lstm._parameters["weight_hh_l0"] is registered and registered.device.type == "cpu"


class TwoBatches(nn.Module):
    """One batch-first LSTM run on two batches of different sizes (a tagging batch, an LM batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(40, 6)
        self.lstm = nn.LSTM(6, 6, batch_first=True)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lstm(self.emb(a))[0], self.lstm(self.emb(b))[0]


@pytest.mark.parametrize("by_keyword", [False, True])
def test_each_spec_names_its_own_input_and_contradicts_no_other(by_keyword: bool) -> None:
    specs = {"a": "bs=6,T=4", "b": "bs=4,T=6"}
    run = dry_run(TwoBatches(), **specs) if by_keyword else dry_run(TwoBatches(), *specs.values())
    assert run.ok, run  # bs=6, T=4 of `a` are no evidence against `b`
    assert run.trace is not None
    assert [(i.label, i.format()) for i in run.trace.calls[0].inputs] == [("a", "(bs=6, T=4)"), ("b", "(bs=4, T=6)")]
    assert run.trace.calls[0].inputs[1].origins == ("inputs_dims", "inputs_dims")  # declared, not guessed
    assert "bs" not in run.sizes and "T" not in run.sizes  # two sizes each: declared for neither


def test_sizes_the_specs_agree_on_are_still_evidence() -> None:
    run = dry_run(TwoBatches(), "bs=6,T=4", "T=4,bs=6")  # b is laid out (T, bs) for the batch-first LSTM
    assert run.sizes == {"bs": 6, "T": 4, "vocab": 40}
    assert run.error is not None and run.error.code == "batch_first_swap"


class FlatLM(nn.Module):
    """A seq-first LM whose logits are flattened to (T*bs, vocab)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.emb, self.rnn, self.out = nn.Embedding(vocab, 8), nn.LSTM(8, 16), nn.Linear(16, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(self.emb(x))[0]).view(-1, self.vocab)


def test_a_vocabulary_equal_to_t_times_bs_names_nothing_by_size_alone() -> None:
    run = dry_run(FlatLM(36), "T=6,bs=6")  # vocab=36 == T*bs: the rows match it by size alone
    assert run.ok and run.sizes["vocab"] == 36 and run.trace is not None
    logits = run.trace.calls[0].outputs[0]
    assert logits.shape == (36, 36)
    assert "vocab" not in logits.names  # at most a guess (vocab?), never a plain name
