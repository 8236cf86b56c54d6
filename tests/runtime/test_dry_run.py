"""dry_run: meta inputs from declared sizes, checked and traced, the model left as it was."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import shapeviz as sv
from shapeviz.gallery.models import EmbedRNN, ForgotTranspose, HelloEmbedding
from shapeviz.runtime.dryrun import DryRun, dry_run, meta_inputs


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
    (lambda: dry_run(nn.GRU(10, 20), "bs=2,T=12345678901"), "T is too large"),
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


# ---- real model patterns, written the way tutorials write them ----------------------------

device = torch.device("cpu")  # tutorials: torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Encoder(nn.Module):
    def __init__(self, input_dim: int, emb_dim: int, hid_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(input_dim, emb_dim)
        self.rnn = nn.GRU(emb_dim, hid_dim)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(src)  # src = [src len, batch size]
        _outputs, hidden = self.rnn(embedded)
        return hidden


class Decoder(nn.Module):
    def __init__(self, output_dim: int, emb_dim: int, hid_dim: int) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.embedding = nn.Embedding(output_dim, emb_dim)
        self.rnn = nn.GRU(emb_dim, hid_dim)
        self.fc_out = nn.Linear(hid_dim, output_dim)

    def forward(self, input: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        input = input.unsqueeze(0)  # [batch size] -> [1, batch size]
        output, hidden = self.rnn(self.embedding(input), hidden)
        return self.fc_out(output.squeeze(0)), hidden


class Seq2Seq(nn.Module):
    """The seq2seq tutorial's model: two inputs, an output buffer made with zeros(...).to(device)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.decoder, self.device = Encoder(30, 8, 16), Decoder(40, 8, 16), device

    def forward(self, src: torch.Tensor, trg: torch.Tensor, teacher_forcing_ratio: float = 1.0) -> torch.Tensor:
        trg_len, batch_size = trg.shape
        outputs = torch.zeros(trg_len, batch_size, self.decoder.output_dim).to(self.device)
        hidden = self.encoder(src)
        input = trg[0, :]
        for t in range(1, trg_len):
            output, hidden = self.decoder(input, hidden)
            outputs[t] = output
            input = trg[t] if teacher_forcing_ratio >= 0.5 else output.argmax(1)
        return outputs


def test_seq2seq_two_inputs_by_keyword() -> None:
    run = dry_run(Seq2Seq(), src="T=7,bs=2", trg="T=5,bs=2", teacher_forcing_ratio=0.0)
    assert run.ok, run
    assert repr(run) == ("DryRun(Seq2Seq, inputs src (T=7, bs=2) int64, trg (T=5, bs=2) int64 on meta: ok, "
                         "20 module calls)")
    assert run.sizes == {"bs": 2, "vocab": 30}  # src's T=7 and trg's T=5 disagree: T declared for neither
    t = run.trace
    assert t is not None
    assert [i.format() for i in t.find(path="encoder.rnn")[0].inputs] == ["(T=7, bs=2, emb=8)"]
    steps = t.find(path="decoder.rnn")
    assert len(steps) == 4 and [i.format() for i in steps[0].inputs] == ["(T=1, bs=2, emb=8)",
                                                                         "(layers*D=1, bs=2, h=16)"]
    assert t.find(path="decoder.fc_out")[-1].outputs[0].shape == (2, 40)


def test_seq2seq_two_inputs_positional_and_as_a_tuple() -> None:
    a = dry_run(Seq2Seq(), "T=7,bs=2", "T=5,bs=2")
    b = dry_run(Seq2Seq(), ("T=7,bs=2", "T=5,bs=2"))
    assert repr(a) == repr(b) == ("DryRun(Seq2Seq, inputs (T=7, bs=2) int64, (T=5, bs=2) int64 on meta: ok, "
                                  "20 module calls)")
    c = dry_run(Seq2Seq(), torch.zeros(7, 2, dtype=torch.long), torch.zeros(5, 2, dtype=torch.long))
    assert c.ok and c.input_text == "(7, 2) int64, (5, 2) int64"


class Forecaster(nn.Module):
    """A time-series LSTM: a float series (bs, T), unsqueeze(-1) to (bs, T, 1), the state made in forward."""

    def __init__(self, hidden_size: int = 32, num_layers: int = 2) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.lstm = nn.LSTM(1, hidden_size, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(-1)  # (bs, T) -> (bs, T, 1)
        h0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size).to(device)
        c0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size, device="cpu").cpu()
        out, _ = self.lstm(x, (h0, c0))
        return self.fc(out[:, -1, :])


def test_float_series_without_emb() -> None:
    run = dry_run(Forecaster(), "bs=4,T=30 float")
    assert run.ok, run
    assert repr(run) == "DryRun(Forecaster, input (bs=4, T=30) float32 on meta: ok, 3 module calls)"
    [lstm] = run.trace.find(path="lstm")  # type: ignore[union-attr]
    assert [(i.format(), i.device) for i in lstm.inputs] == [
        ("(bs=4, T=30, emb=1)", "meta"), ("(layers*D=2, bs=4, h=32)", "meta"), ("(layers*D=2, bs=4, h=32)", "meta")]
    assert run.trace.calls[-1].outputs[0].shape == (4, 1)  # type: ignore[union-attr]
    half = dry_run(Forecaster().half(), "bs=4,T=30 float")  # `float`: the model's float dtype
    assert half.dtype == torch.float16
    assert dry_run(Forecaster(), "bs=4,T=30 float64").error.code == "dtype"  # type: ignore[union-attr]


class CudaState(nn.Module):
    """State moved with .cuda() and made with device='cuda' (fails on a CPU-only machine without a dry run)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(10, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(1, x.shape[1], 20).cuda()
        steps = torch.arange(x.shape[0], device="cuda")
        ones = torch.ones_like(h, device="cuda") + x.new_zeros(1, device="cuda")
        out, h = self.rnn(x.to("cuda", non_blocking=True), h.to(x) * ones)
        return out[steps]


def test_factory_calls_and_moves_stay_on_meta() -> None:
    run = dry_run(CudaState(), "T=5,bs=2,emb=10")
    assert run.ok, run
    [rnn] = run.trace.find(path="rnn")  # type: ignore[union-attr]
    assert [(i.format(), i.device) for i in rnn.inputs] == [("(T=5, bs=2, emb=10)", "meta"),
                                                            ("(layers*D=1, bs=2, h=20)", "meta")]
    assert [(i.format(), i.device) for i in rnn.outputs] == [("(T=5, bs=2, D*h=20)", "meta"),
                                                             ("(layers*D=1, bs=2, h=20)", "meta")]
    x = torch.zeros(2, 3)
    assert x.to(torch.float64).device.type == "cpu"  # after the run: torch as it was


def _wn_model(kind: str) -> nn.Module:
    if kind == "parametrizations.weight_norm":
        lstm = torch.nn.utils.parametrizations.weight_norm(nn.LSTM(10, 20, batch_first=True), "weight_hh_l0")
    else:
        with pytest.warns(FutureWarning):
            lstm = torch.nn.utils.weight_norm(nn.LSTM(10, 20, batch_first=True), "weight_ih_l0")

    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm, self.fc = lstm, nn.Linear(20, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.lstm(x)[0])

    return Tagger()


@pytest.mark.parametrize("kind", ["parametrizations.weight_norm", "utils.weight_norm"])
def test_weight_normed_lstm_is_sized_from_its_config(kind: str) -> None:
    model = _wn_model(kind)
    before = _state(model)
    run = dry_run(model, "bs=2,T=5")  # emb=input_size=10 from the (parametrized) LSTM, not from fc
    assert run.ok, run
    assert run.input_names == ("bs", "T", "emb") and run.input_shape == (2, 5, 10)
    assert _same(before, _state(model))
    with sv.checking():  # the model is left computing on the CPU (no weight left behind on meta)
        assert model(torch.zeros(2, 5, 10)).device.type == "cpu"


def argmax(vec: torch.Tensor) -> int:
    _, idx = torch.max(vec, 1)
    return idx.item()


class BiLSTMCRF(nn.Module):
    """The BiLSTM-CRF tutorial's decode: a Viterbi loop on Python ints from .item()."""

    def __init__(self, vocab_size: int = 20, tagset_size: int = 5, embedding_dim: int = 8, hidden_dim: int = 6):
        super().__init__()
        self.hidden_dim, self.tagset_size = hidden_dim, tagset_size
        self.word_embeds = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim // 2, num_layers=1, bidirectional=True)
        self.hidden2tag = nn.Linear(hidden_dim, tagset_size)
        self.transitions = nn.Parameter(torch.randn(tagset_size, tagset_size))
        self.hidden = self.init_hidden()

    def init_hidden(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randn(2, 1, self.hidden_dim // 2), torch.randn(2, 1, self.hidden_dim // 2))

    def _get_lstm_features(self, sentence: torch.Tensor) -> torch.Tensor:
        self.hidden = self.init_hidden()
        embeds = self.word_embeds(sentence).view(len(sentence), 1, -1)
        lstm_out, self.hidden = self.lstm(embeds, self.hidden)
        return self.hidden2tag(lstm_out.view(len(sentence), self.hidden_dim))

    def _viterbi_decode(self, feats: torch.Tensor) -> list[int]:
        forward_var = torch.full((1, self.tagset_size), -10000.0)
        best_path = []
        for feat in feats:
            viterbivars_t = []
            for next_tag in range(self.tagset_size):
                next_tag_var = forward_var + self.transitions[next_tag]
                best_tag_id = argmax(next_tag_var)
                viterbivars_t.append(next_tag_var[0][best_tag_id].view(1))
            forward_var = (torch.cat(viterbivars_t) + feat).view(1, -1)
            best_path.append(argmax(forward_var))
        return best_path

    def forward(self, sentence: torch.Tensor) -> list[int]:
        return self._viterbi_decode(self._get_lstm_features(sentence))


def test_data_dependent_stop_names_the_line_and_keeps_the_trace() -> None:
    model = BiLSTMCRF()
    hidden = model.hidden
    with pytest.raises(sv.DryRunError) as info:
        dry_run(model, "T=6")
    err = info.value
    assert isinstance(err, sv.ShapevizError) and err.operation == "Tensor.item()"
    assert err.source == f"{__file__}:{argmax.__code__.co_firstlineno + 2}" and err.function == "in argmax"
    assert err.line == "return idx.item()"
    assert str(err).splitlines()[0] == f"the dry run stopped at {err.source} in argmax: return idx.item()"
    assert "a dry run has shapes and dtypes only" in str(err) and "traced up to here: 4 module calls" in str(err)
    calls = [(c.path, c.type) for c in err.trace.calls]  # type: ignore[attr-defined]
    assert calls == [("", "BiLSTMCRF"), ("word_embeds", "Embedding"), ("lstm", "LSTM"), ("hidden2tag", "Linear"),
                     ("", "item")]  # the op it stopped at comes last, marked raised
    lstm = err.trace.calls[2]  # type: ignore[attr-defined]
    assert lstm.outputs[0].format() == "(T=6, bs=1, D*h=6)"
    assert model.hidden is hidden  # the state the forward saved in self is put back
    assert torch._C._len_torch_function_stack() == 0 and not sv.enabled()


class IfOnTensor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(4, 8)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        if (lengths > 0).all():
            out = out[: int(lengths.max())]
        return out


@pytest.mark.parametrize(("op", "line"), [
    ("bool(tensor) (an `if`/`while`/`and`/`or`/`not` on a tensor)", "if (lengths > 0).all():"),
])
def test_if_on_a_tensor_stops(op: str, line: str) -> None:
    with pytest.raises(sv.DryRunError) as info:
        dry_run(IfOnTensor(), torch.zeros(5, 2, 4), torch.tensor([5, 3]))
    assert (info.value.operation, info.value.line) == (op, line)
    assert [c.type for c in info.value.trace.calls] == ["IfOnTensor", "RNN", "__bool__"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("code", "op"), [
    ("int(x.sum())", "int(tensor)"), ("x.tolist()", "Tensor.tolist()"), ("x[x > 0]", "indexing with a boolean mask"),
    ("torch.nonzero(x)", "torch.nonzero"), ("float(x[0, 0])", "float(tensor)"), ("list(range(9))[x.long()[0, 0]]",
                                                                             "a tensor used as a Python index"),
])
def test_value_reads_stop(code: str, op: str) -> None:
    def forward(x: torch.Tensor) -> object:
        return eval(code)  # the test's own table of expressions, not user input

    model = nn.Identity()
    model.forward = forward  # type: ignore[method-assign]
    with pytest.raises(sv.DryRunError, match="a dry run has shapes and dtypes only") as info:
        dry_run(model, "bs=2,T=3 float")
    assert info.value.operation.startswith(op)


class SeesItsInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(10, 20)
        self.seen: list[str] = []

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        self.seen = [t.device.type for t in (x, *state)]
        return self.lstm(x, state)[0]


def test_example_tensors_become_meta() -> None:
    model = SeesItsInputs()
    x, h0, c0 = torch.randn(5, 3, 10), torch.zeros(1, 3, 20), torch.zeros(1, 3, 20, dtype=torch.float64)
    run = dry_run(model, (x, (h0, c0)))
    assert model.seen == ["meta"] * 3  # the inputs the model got are meta: no storage, no computation
    assert run.error is not None and run.error.code == "dtype" and run.error.argument == "c_0"  # float64 c_0
    assert run.input_text == "(5, 3, 10) float32, arg1.0 (1, 3, 20) float32, arg1.1 (1, 3, 20) float64"
    assert x.device.type == "cpu"
    assert all(p.device.type == "cpu" for p in model.parameters())  # the model's own stay real
    ok = dry_run(model, x, state=(h0, c0.float()))
    assert ok.ok and ok.inputs[0].format() == "(5, 3, 10) float32"


def test_base_exceptions_leave_nothing_behind() -> None:
    class Interrupted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(4, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.rnn(x)
            raise KeyboardInterrupt

    model = Interrupted()
    before = _state(model)
    with pytest.raises(KeyboardInterrupt):
        dry_run(model, "T=3,bs=2")
    assert torch._C._len_torch_function_stack() == 0 and torch.empty(1).device.type == "cpu"
    assert not sv.enabled() and sv.core.dimensions.declared() is None  # type: ignore[attr-defined]
    assert _same(before, _state(model))


@pytest.mark.parametrize(("spec", "match"), [
    ("bs=4,T=30 floot", r"'floot' in 'bs=4,T=30 floot' is not a kind; valid kinds: float, float16, .*bool"),
    ("bs=2,T=5,vocab=28 float", r"token ids \(vocab=28\) need an integer dtype"),
    ("", r"expected sizes such as 'bs=2,T=5'.*'bs=4,T=30 float'"),
])
def test_bad_kind_specs(spec: str, match: str) -> None:
    with pytest.raises(sv.SpecError, match=match):
        dry_run(Forecaster(), x=spec)


def test_inputs_the_forward_cannot_take() -> None:
    seq2seq = (r"Seq2Seq\.forward\(src, trg, teacher_forcing_ratio=1\.0\) cannot take the inputs given "
               r"\(src=, tgt=\): missing a required argument: 'trg'")
    with pytest.raises(sv.SpecError, match=seq2seq):
        dry_run(Seq2Seq(), src="T=7,bs=2", tgt="T=5,bs=2")  # the forward's parameter is `trg`
    old = r"Forecaster\.forward\(x\) cannot take the inputs given \(inputs=\): missing a required argument: 'x'"
    with pytest.raises(sv.SpecError, match=old):
        dry_run(Forecaster(), inputs="bs=4,T=30 float")  # the old keyword: sizes are positional now


def test_the_readme_examples_print_what_the_readme_shows(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    """Each top-level statement of the README's second dry-run block, run as the file ``dry.py``, prints
    (or, for a bare expression, reprs to) the ``# `` comment lines right after it."""
    import ast
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Dry runs", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```python\n(.*?)```", section, flags=re.S)[1]
    path = Path(str(tmp_path)) / "dry.py"
    path.write_text(block, encoding="utf-8")
    lines = block.splitlines()
    shown_path = re.search(r"stopped at (\S+):\d+", block).group(1)  # type: ignore[union-attr]
    namespace: dict[str, object] = {"__name__": "dry"}
    checked = 0
    for stmt in ast.parse(block).body:
        expected = []
        for line in lines[stmt.end_lineno:]:  # type: ignore[misc]
            if not line.startswith("# "):
                break
            expected.append(line[2:].replace(shown_path, str(path)))
        code = compile(ast.Module(body=[stmt], type_ignores=[]), str(path), "exec")
        bare = isinstance(stmt, ast.Expr) and not (isinstance(stmt.value, ast.Call)
                                                   and getattr(stmt.value.func, "id", "") == "print")
        if bare:
            value = eval(compile(ast.Expression(stmt.value), str(path), "eval"), namespace)  # the README's code
            out = repr(value) + "\n"
        else:
            exec(code, namespace)  # the README's own example, not user input
            out = capsys.readouterr().out
        if expected:
            assert out == "\n".join(expected) + "\n"
            checked += 1
    assert checked == 5


class DictBatch(nn.Module):
    """Takes one dict of tensors, as many training loops pass a batch."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 5, batch_first=True)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.gru(batch["x"])[0][torch.arange(batch["x"].shape[0]), batch["n"] - 1]


def test_tensors_given_in_a_dict_are_shown_by_their_key() -> None:
    run = sv.dry_run(DictBatch(), {"x": torch.zeros(2, 3, 4), "n": torch.ones(2, dtype=torch.long)})
    assert run.ok, run
    want = "DryRun(DictBatch, inputs arg0.x (2, 3, 4) float32, arg0.n (2,) int64 on meta: ok"
    assert repr(run).startswith(want), repr(run)
    assert [i.keyword for i in run.inputs] == ["arg0.x", "arg0.n"] and run.input_shape == (2, 3, 4)
    run = sv.dry_run(DictBatch(), batch={"x": torch.zeros(2, 3, 4), "n": torch.ones(2, dtype=torch.long)})
    assert "inputs batch.x (2, 3, 4) float32, batch.n (2,) int64 on meta: ok" in repr(run), repr(run)


@pytest.mark.parametrize(("layer", "shape"), [
    (nn.LSTM(4, 8), (5, 2, 4)), (nn.GRU(4, 8, batch_first=True), (2, 5, 4)),
    (nn.RNN(4, 8, bidirectional=True), (5, 2, 4)), (nn.GRUCell(4, 8), (2, 4))])
def test_no_input_is_laid_out_as_the_first_layer_takes_it(layer: nn.Module, shape: tuple[int, ...]) -> None:
    """With no input, a seq-first layer gets (T, bs, emb), a batch-first one (bs, T, emb) and a cell one step
    (bs, emb): the default is no layout mistake (a bare nn.LSTM read batch_first_swap), and runs as torch does."""
    run = sv.dry_run(layer)
    assert run.ok, run.error
    assert run.inputs[0].shape == shape
    layer(torch.zeros(shape))  # torch takes it too


def test_a_dtype_that_is_not_a_torch_dtype_is_a_spec_error_with_the_kinds() -> None:
    with pytest.raises(sv.SpecError, match=r"expected a torch.dtype .*'float64'.*kinds: float16"):
        sv.dry_run(nn.LSTM(4, 8), "T=5,bs=2", dtype="float64")


class SeriesForecast(nn.Module):
    """Takes a series ``(bs, T)`` and adds the feature dim itself: the first layer's input is not the model's."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm, self.fc = nn.LSTM(1, 8, batch_first=True), nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lstm(x.unsqueeze(-1))[0][:, -1])


def test_a_guessed_input_says_it_was_guessed() -> None:
    """With no input, the run builds one for the first layer; where the model takes another (a series it
    unsqueezes), the error is the guess's: the run says the input was guessed and how to give it."""
    run = dry_run(SeriesForecast())
    assert run.error is not None and run.error.code == "input_ndim"
    assert "guessed for LSTM(1, 8, batch_first=True)" in repr(run)
    assert "no input was given" in str(run) and "'bs=2,T=5 float'" in str(run)
    assert dry_run(SeriesForecast(), "bs=2,T=5 float").ok
    assert "guessed" not in repr(dry_run(nn.LSTM(4, 8)))  # a bare layer: the input is the layer's own
