"""dry_run: meta inputs from declared sizes, checked and traced, the model left as it was."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import shapeviz as sv
from shapeviz.gallery.models import EmbedRNN, ForgotTranspose, HelloEmbedding
from shapeviz.tracing.dryrun import DryRun, dry_run, meta_inputs


class HiddenWithoutLayers(nn.Module):
    """The seeds' nn.RNN with h_0 made as (bs, h): the layers dim forgotten."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(10, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = torch.zeros(x.shape[1], 20)  # should be (1, bs, 20)
        return self.rnn(x, h0)[0]


class CellOnSequence(nn.Module):
    """The seeds' RNNCell given the whole (T, bs, emb) sequence instead of one step."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.RNNCell(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[1], 8)
        return self.cell(x, h)  # should be: for x_t in x: h = self.cell(x_t, h)


def _state(model: nn.Module) -> dict[str, object]:
    """Everything a dry run must leave alone: tensors (identity, storage, device, values), hooks, mode."""
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    return {
        "tensors": {k: (id(t), t.data_ptr(), t.device, t.dtype, t.shape, t.requires_grad, t.detach().clone())
                    for k, t in tensors.items()},
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
        "training": [m.training for m in model.modules()],
        "flat": [[id(w) for w in m._flat_weights] for m in model.modules() if isinstance(m, nn.RNNBase)],  # cache
    }


def _same(a: dict[str, object], b: dict[str, object]) -> bool:
    ta, tb = a["tensors"], b["tensors"]
    assert isinstance(ta, dict) and isinstance(tb, dict)
    if ta.keys() != tb.keys():
        return False
    for k in ta:
        *meta_a, va = ta[k]
        *meta_b, vb = tb[k]
        if meta_a != meta_b or not torch.equal(va, vb):
            return False
    return all(a[k] == b[k] for k in ("hooks", "training", "flat"))


def test_real_weights_run_as_meta_stand_ins_and_stay_unchanged() -> None:
    model = EmbedRNN()
    model.train()
    before = _state(model)
    run = dry_run(model, "bs=2,T=5")
    assert run.ok and run.stand_ins == len(before["tensors"])  # type: ignore[arg-type]
    assert _same(before, _state(model))
    assert all(p.device.type == "cpu" for p in model.parameters())
    rnn = run.trace.find(path="rnn")[0]  # type: ignore[union-attr]
    assert [(i.role, i.format(), i.device) for i in rnn.outputs] == [
        ("output", "(T=5, bs=2, D*h=32)", "meta"), ("h_n", "(layers*D=1, bs=2, h=32)", "meta")]
    # the model still computes as before
    out, h = model(torch.zeros(2, 5, dtype=torch.long))
    assert out.shape == (10, 28) and h.shape == (1, 2, 32) and out.device.type == "cpu"


def test_error_path_also_leaves_the_model_unchanged() -> None:
    model = ForgotTranspose()  # the Embedding output not transposed for the seq-first RNN
    before = _state(model)
    run = dry_run(model, "bs=2,T=5")
    assert _same(before, _state(model))
    assert run.error is not None and run.error.code == "batch_first_swap"
    assert run.error.module == "rnn: RNN(20, 32)"
    assert run.error.hints[0] == "x = x.transpose(0, 1)  # (bs, T, emb) -> (T, bs, emb)"
    assert not run.ok
    assert run.trace is not None and run.trace.error.startswith("ShapeError: [batch_first_swap]")
    assert [c.path for c in run.trace.calls] == ["", "embedding", "rnn"]


def test_hidden_without_layers_dim() -> None:
    run = dry_run(HiddenWithoutLayers(), "T=5,bs=2,emb=10")
    assert run.error is not None and run.error.code == "hidden_ndim"
    assert run.error.actual == (2, 20)  # h_0 made by the forward, on meta
    assert run.error.hints == ["h0 = h0.unsqueeze(0)  # (bs, h) -> (layers*D=1, bs, h)"]


def test_cell_given_the_whole_sequence() -> None:
    run = dry_run(CellOnSequence(), "T=5,bs=2,emb=4")
    assert run.error is not None and run.error.code == "input_ndim"
    assert run.error.hints[0] == "for x_t in x:  # x: (T, bs, emb) -> x_t: (bs, emb)"
    assert repr(run) == ("DryRun(CellOnSequence, input (T=5, bs=2, emb=4) float32 on meta: ShapeError "
                         "[input_ndim] at cell: RNNCell(4, 8), argument `input` after 2 module calls)")
    with pytest.raises(sv.ShapeError, match=r"\[input_ndim\] cell: RNNCell\(4, 8\)"):
        run.raise_error()


def test_meta_built_model_runs_as_is() -> None:
    with torch.device("meta"):
        model = HelloEmbedding()  # creates h0 = torch.zeros(2, bs, 8) in its forward: meta too
    run = dry_run(model, "bs=3,T=7")
    assert run.ok and run.stand_ins == 0 and run.sizes == {"bs": 3, "T": 7, "vocab": 4}
    assert repr(run) == "DryRun(HelloEmbedding, input (bs=3, T=7) int64 on meta: ok, 4 module calls)"
    [rnn] = run.trace.find(path="rnn")  # type: ignore[union-attr]
    assert [i.format() for i in rnn.inputs] == ["(bs=3, T=7, emb=10)", "(layers*D=2, bs=3, h=8)"]
    assert "DryRun(HelloEmbed" in str(run) and "rnn (RNN)" in str(run)


def test_float_inputs_take_names_in_the_order_given() -> None:
    seq_first = nn.LSTM(10, 20, num_layers=2, bidirectional=True)
    run = dry_run(seq_first, "T=5,bs=2,emb=10")
    assert run.ok and run.input_names == ("T", "bs", "emb") and run.input_shape == (5, 2, 10)
    assert run.trace.calls[0].outputs[0].format() == "(T=5, bs=2, D*h=40)"  # type: ignore[union-attr]
    swapped = dry_run(seq_first, "bs=2,T=5,emb=10")  # a (bs, T, emb) batch for a seq-first layer
    assert swapped.error is not None and swapped.error.code == "batch_first_swap"
    assert dry_run(nn.GRU(10, 20, batch_first=True), "bs=2,T=5,emb=10").ok


def test_first_recurrent_layer_gives_emb() -> None:
    x, names, _ = meta_inputs(nn.GRU(10, 20), "T=5,bs=2")
    assert (tuple(x.shape), names, x.dtype) == ((5, 2, 10), ("T", "bs", "emb"), torch.float32)
    x, names, _ = meta_inputs(nn.Sequential(nn.LSTM(6, 8, batch_first=True)), "bs=3,T=4")
    assert (tuple(x.shape), names) == ((3, 4, 6), ("bs", "T", "emb"))
    x, names, _ = meta_inputs(nn.LSTMCell(6, 8), "bs=3")
    assert (tuple(x.shape), names) == ((3, 6), ("bs", "emb"))
    x, names, _ = meta_inputs(nn.GRU(10, 20).double(), "T=4")  # unbatched (T, emb), the model's dtype
    assert (tuple(x.shape), names, x.dtype) == ((4, 10), ("T", "emb"), torch.float64)
    # the order given is the layout: (bs, T, emb) for a seq-first layer is the mistake it is
    run = dry_run(nn.GRU(10, 20), "bs=2,T=5")
    assert run.error is not None and run.error.code == "batch_first_swap"


def test_tokens_from_vocab() -> None:
    model = nn.Sequential(nn.Linear(4, 4))  # not an Embedding: tokens only when asked for
    x, _, sizes = meta_inputs(model, "bs=2,T=5,vocab=28")
    assert (x.dtype, tuple(x.shape), sizes) == (torch.long, (2, 5), {"bs": 2, "T": 5, "vocab": 28})
    x, _, sizes = meta_inputs(model, {"bs": 2, "T": 5}, vocab=28, dtype=torch.int32)
    assert x.dtype == torch.int32 and sizes["vocab"] == 28
    run = dry_run(EmbedRNN(), "bs=2,T=5", vocab=28)
    assert run.trace is not None and run.trace.sizes["vocab"] == [28]


def test_dtype_mistake_is_caught() -> None:
    run = dry_run(nn.GRU(10, 20), "T=5,bs=2,emb=10", dtype=torch.float16)
    assert run.error is not None and run.error.code == "dtype"


@pytest.mark.parametrize(("call", "match"), [
    (lambda: dry_run(nn.GRU(10, 20), "bs=2;T=5"), "is not NAME=SIZE"),
    (lambda: dry_run(nn.GRU(10, 20), ""), "expected sizes such as 'bs=2,T=5'"),
    (lambda: dry_run(EmbedRNN(), "bs=2,T=5", dtype=torch.float32), "need an integer dtype"),
    (lambda: dry_run(EmbedRNN(), "bs=2,T=5,vocab=28", vocab=30), "disagree"),
])
def test_bad_specs(call: object, match: str) -> None:
    with pytest.raises(sv.SpecError, match=match):
        call()  # type: ignore[operator]


def test_not_a_module() -> None:
    with pytest.raises(TypeError, match=r"takes an nn\.Module"):
        dry_run(lambda x: x, "bs=2")  # type: ignore[arg-type]


def test_other_errors_propagate_and_nothing_is_left_behind() -> None:
    model = nn.Sequential(nn.GRU(10, 20), nn.Linear(30, 4))  # Linear on the GRU's (output, h_n) tuple
    before = _state(model)
    with pytest.raises((TypeError, RuntimeError)) as info:
        dry_run(model, "T=5,bs=2,emb=10")
    assert "shapeviz.trace: the forward pass of Sequential raised" in "\n".join(info.value.__notes__)
    assert _same(before, _state(model))
    assert not sv.enabled()


def test_dry_run_inside_checking_keeps_it_on() -> None:
    with sv.checking():
        run = dry_run(HiddenWithoutLayers(), "T=5,bs=2,emb=10")
        assert sv.enabled()
    assert isinstance(run, DryRun) and run.error is not None
    assert not sv.enabled()


def test_html() -> None:
    page = dry_run(ForgotTranspose(), "bs=2,T=5")._repr_html_()
    assert "<b>dry run</b>" in page and "[batch_first_swap]" in page and "trace of ForgotTranspose" in page
