"""sv.trace on the seeds' systems (the gallery's models, and trace_models.py): named shapes in the records,
ops with source lines, exception notes, cleanup on every path, renderers.

Regenerate the golden tables with ``pytest tests/test_trace.py --regen``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import doctest
import gc
import inspect
import json
import weakref
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn as nn
import trace_models
from trace_models import BiTagger, BrokenCharRNN, Dropper, PlainScratchModel, Seq2Seq

import shapeviz as sv
import shapeviz.gallery.models as gallery_models
import shapeviz.render.plot as plot_mod
import shapeviz.render.table as table_mod
import shapeviz.tracing.json_reader as json_reader_mod
import shapeviz.tracing.meta as meta_mod
import shapeviz.tracing.modestack as modestack_mod
import shapeviz.tracing.modulecalls as modulecalls_mod
import shapeviz.tracing.naming as naming_mod
import shapeviz.tracing.oprecorder as oprecorder_mod
import shapeviz.tracing.oprules as oprules_mod
import shapeviz.tracing.recorder as recorder_mod
import shapeviz.tracing.records as records_mod
import shapeviz.tracing.session as session_mod
import shapeviz.tracing.tensorbook as tensorbook_mod
from shapeviz.gallery.models import BatchFirstLoopRNN, CellOverDataset, CharRNNScratch, EmbedRNN, PackedLSTM
from shapeviz.tracing.records import SCHEMA, Call, TensorInfo, Trace
from shapeviz.tracing.session import trace

Golden = Callable[[str, str], None]  # the golden fixture of conftest.py


def source_of(text: str, module: ModuleType) -> str:
    """``file.py:line`` of the first line of ``module`` holding ``text`` (so tests survive edits above it)."""
    path = Path(inspect.getsourcefile(module) or "")
    hits = [i + 1 for i, line in enumerate(path.read_text().splitlines()) if text in line]
    assert hits, text
    return f"{path.name}:{hits[0]}"


def io(call: Call, which: str = "outputs") -> list[tuple[str, tuple[int, ...], tuple[str, ...] | None]]:
    return [(i.role, i.shape, i.names) for i in getattr(call, which)]


def tokens(bs: int = 2, T: int = 5) -> torch.Tensor:
    return torch.arange(bs * T).reshape(bs, T) % 28


# ------------------------------------------------------------------ the seeds' systems
def test_one_hot_char_rnn_ops_show_each_step(golden: Golden):
    with sv.dims(vocab=28, h=512):
        t = trace(CharRNNScratch(hidden=512), tokens(), torch.zeros(2, 512), ops=True, inputs_dims="bs T")
    root = t.calls[0]
    assert (root.kind, root.path, root.type) == ("module", "", "CharRNNScratch")
    # tokens named by inputs_dims; H's 2 equals bs only by size (a guess), h=512 is sv.dims' unique size
    assert [(i.label, i.names) for i in root.inputs] == [("tokens", ("bs", "T")), ("H", ("bs?", "h"))]
    assert root.inputs[0].origins == ("inputs_dims", "inputs_dims")
    assert root.inputs[1].origins == ("size (guess)", "sv.dims (by size)")
    assert [(o.shape, o.names) for o in root.outputs] == [((10, 28), ("T*bs", "vocab")), ((2, 512), ("bs", "h"))]

    (one_hot,) = t.find(type="one_hot")
    assert io(one_hot, "inputs") == [("", (5, 2), ("T", "bs"))]
    assert io(one_hot) == [("", (5, 2, 28), ("T", "bs", "vocab"))]
    assert one_hot.source == source_of("F.one_hot(tokens.T", gallery_models)

    step = source_of("H = torch.tanh(X @ self.W_xh + H @ self.W_hh + self.b_h)", gallery_models)
    matmuls = t.find(type="matmul")
    assert len(matmuls) == 3 * 5  # X @ W_xh, H @ W_hh, H @ W_hq at each of T=5 steps
    first = matmuls[0]
    assert first.describe() == "X (bs=2, vocab=28) @ self.W_xh (vocab=28, h=512) → (bs=2, h=512)"
    assert first.source == step and first.code.startswith("H = torch.tanh(")
    assert {m.describe() for m in matmuls[1::3]} == {  # the first H is zeros(2, 512): bs only by size
        "H (bs?=2, h=512) @ self.W_hh (h=512, h=512) → (bs?=2, h=512)",
        "H (bs=2, h=512) @ self.W_hh (h=512, h=512) → (bs=2, h=512)"}
    assert all(c.kind == "op" and c.path == "" and c.parent == 0 for c in matmuls)

    (cat,) = t.find(type="cat")
    assert cat.inputs[0].repeat == 5 and cat.inputs[0].names == ("bs", "vocab")
    assert io(cat) == [("", (10, 28), ("T*bs", "vocab"))]
    assert t.sizes == {"vocab": [28], "h": [512], "bs": [2], "T": [5]}
    text = t.table()
    assert "┌ × T=5" in text
    golden("trace/char_rnn_ops.txt", text + "\n")


def test_embedding_rnn_reshape_linear_to_T_bs_vocab(golden: Golden):
    model = EmbedRNN(hidden=512)
    with sv.dims(vocab=28):
        t = trace(model, tokens(), torch.zeros(1, 2, 512))
    assert [c.path for c in t.calls] == ["", "embedding", "rnn", "linear"]
    emb, rnn, lin = t.calls[1:]
    assert io(emb) == [("", (5, 2, 20), ("T", "bs", "emb"))]
    assert rnn.conventions == sv.conventions(model.rnn)
    assert io(rnn, "inputs") == [("input", (5, 2, 20), ("T", "bs", "emb")),
                                 ("h_0", (1, 2, 512), ("layers*D", "bs", "h"))]
    assert io(rnn) == [("output", (5, 2, 512), ("T", "bs", "D*h")), ("h_n", (1, 2, 512), ("layers*D", "bs", "h"))]
    # without ops=True the reshape is not seen: 512 = h is a guess by size, and 10 is left bare
    # (a size cannot tell T*bs from bs*T)
    assert io(lin, "inputs") == [("", (10, 512), ("", "h?"))]
    assert io(lin) == [("", (10, 28), ("", "vocab"))]
    # the root's input is named by size only (a guess) once the RNN made T and bs known
    assert t.calls[0].inputs[0].names == ("bs?", "T?")
    assert t.calls[0].outputs[0].names == ("", "vocab")
    golden("trace/embed_rnn.txt", t.table() + "\n")

    with sv.dims(vocab=28):
        t2 = trace(model, tokens(), torch.zeros(1, 2, 512), ops=True)
    (reshape,) = t2.find(type="reshape")
    assert io(reshape) == [("", (10, 512), ("T*bs", "D*h"))]  # output (T, bs, D*h) flattened
    assert reshape.outputs[0].origins == ("op reshape", "op reshape")
    assert reshape.inputs[0].label == "y"
    assert [c.type for c in t2.calls if c.kind == "op"] == [".T", "reshape"]  # none from inside torch modules


def test_rnncell_loop_over_dataset(golden: Golden):
    t = trace(CellOverDataset(4, 2), torch.randn(3, 1, 4), inputs_dims="T bs emb")
    cells = t.find(path="cell")
    assert len(cells) == 3 and all(c.type == "RNNCell" and c.depth == 1 for c in cells)
    assert io(cells[0], "inputs") == [("input", (1, 4), ("bs", "emb")), ("h_0", (1, 2), ("bs", "h"))]
    assert io(cells[0]) == [("h_1", (1, 2), ("bs", "h"))]
    assert cells[0].conventions is not None and cells[0].conventions.cell
    assert t.calls[0].outputs[0].names == ("bs", "h")
    assert "[ × T=3" in t.table()
    assert cells[1].inputs[1].produced_by == cells[0].index  # step 2's h_0 is step 1's h_1
    golden("trace/cell_loop.txt", t.table() + "\n")


def test_bidirectional_batch_first_layer(golden: Golden):
    t = trace(BiTagger(), torch.randn(3, 7, 6))
    rnn = t.find(path="rnn")[0]
    assert io(rnn, "inputs") == [("input", (3, 7, 6), ("bs", "T", "emb"))]
    assert io(rnn) == [("output", (3, 7, 16), ("bs", "T", "D*h")), ("h_n", (2, 3, 8), ("layers*D", "bs", "h"))]
    head = t.find(path="head")[0]
    assert head.inputs[0].names == ("bs", "T", "D*h")  # the same tensor keeps the GRU's names
    assert t.sizes["D*h"] == [16]
    golden("trace/bi_tagger.txt", t.table() + "\n")

    # the seeds' nn.RNN(4, 3, 1, batch_first=True, bidirectional=True) on (1, 2, 4)
    t = trace(nn.RNN(4, 3, 1, batch_first=True, bidirectional=True), torch.randn(1, 2, 4))
    assert io(t.calls[0]) == [("output", (1, 2, 6), ("bs", "T", "D*h")), ("h_n", (2, 1, 3), ("layers*D", "bs", "h"))]


def test_hand_written_batch_first_loop_ops():
    t = trace(BatchFirstLoopRNN(3, 4), torch.randn(2, 6, 3), torch.zeros(1, 2, 4), ops=True,
              inputs_dims="bs T emb")
    steps = t.find(type="tanh")
    assert len(steps) == 6
    (stack,) = t.find(type="stack")
    # as many pieces as T has steps: a size match (a decoder's steps would match too), so a guess
    assert stack.outputs[0].shape == (2, 6, 4) and stack.outputs[0].names[:2] == ("bs", "T?")
    transposes = t.find(type=".T")
    # a parameter's dims are named by size only: guesses
    assert transposes[0].inputs[0].label == "w_ih" and transposes[0].outputs[0].names == ("emb?", "")


def test_lstm_seq2seq_encoder_state_flows_to_decoder(golden: Golden):
    t = trace(Seq2Seq(), torch.randint(0, 30, (4, 9)), torch.randint(0, 30, (4, 6)))
    enc = t.find(path="encoder.rnn")[0]
    assert enc.type == "LSTM" and enc.depth == 2 and enc.parent == t.find(path="encoder")[0].index
    assert io(enc) == [("output", (9, 4, 24), ("T", "bs", "D*h")),
                       ("h_n", (2, 4, 24), ("layers*D", "bs", "h")), ("c_n", (2, 4, 24), ("layers*D", "bs", "h"))]
    dec = t.find(path="decoder")[0]
    assert [(i.role, i.key) for i in dec.inputs] == [("input", "0"), ("h_0", "1.0"), ("c_0", "1.1")]
    assert dec.inputs[0].names == ("T", "bs", "emb") and dec.inputs[0].shape == (6, 4, 16)
    assert [i.produced_by for i in dec.inputs[1:]] == [enc.index, enc.index]  # the encoder's very (h_n, c_n)
    assert t.sizes["T"] == [6, 9]  # source and target lengths, both named T
    assert t.calls[0].outputs[0].names == ("T", "bs", "")  # vocab=30 was not declared
    golden("trace/seq2seq.txt", t.table() + "\n")


def test_packed_sequence_shows_data_and_batch_sizes(golden: Golden):
    t = trace(PackedLSTM(5, 7), torch.randn(6, 3, 5), torch.tensor([6, 2, 4]))
    rnn = t.find(path="lstm")[0]
    assert [(i.role, i.packed, i.shape, i.names) for i in rnn.inputs] == [
        ("input", "data", (12, 5), ("sum(lengths)", "emb")), ("input", "batch_sizes", (6,), ("T",))]
    assert [(o.role, o.packed, o.shape, o.names) for o in rnn.outputs] == [
        ("output", "data", (12, 7), ("sum(lengths)", "D*h")), ("output", "batch_sizes", (6,), ("T",)),
        ("h_n", "", (1, 3, 7), ("layers*D", "bs", "h")), ("c_n", "", (1, 3, 7), ("layers*D", "bs", "h"))]
    assert rnn.inputs[1].dtype == "int64"
    golden("trace/packed.txt", t.table() + "\n")


def test_plain_callable_model_traces_its_module_attributes():
    with sv.dims(vocab=28, h=64):
        t = trace(PlainScratchModel(), tokens(), torch.zeros(2, 64), ops=True, inputs_dims="bs T")
    assert t.model == "PlainScratchModel"
    assert [c.path for c in t.modules()] == ["", "embedding", "linear"]
    first = t.find(type="matmul")[0]
    assert first.inputs[1].label == "self.W_xh"
    assert t.find(path="linear")[0].outputs[0].names == ("T*bs", "vocab")


def test_ambiguous_when_two_dims_share_a_size():
    t = trace(EmbedRNN(hidden=8), tokens(4, 4), torch.zeros(1, 4, 8))
    root_in = t.calls[0].inputs[0]
    assert root_in.names == ("T|bs?", "T|bs?") and root_in.ambiguous
    rnn = t.find(path="rnn")[0]
    assert rnn.inputs[0].names == ("T", "bs", "emb") and not rnn.inputs[0].ambiguous  # conventions decide
    assert t.find(path="embedding")[0].outputs[0].names == ("T", "bs", "emb")  # the tensor the RNN got


# ------------------------------------------------------------------ meta, CUDA, light traces
def test_big_bidirectional_lstm_on_meta(golden: Golden):
    with torch.device("meta"):
        model = nn.LSTM(1024, 4096, num_layers=8, bidirectional=True)
        x = torch.randn(4096, 64, 1024)
    t = trace(model, x)
    (call,) = t.calls
    assert [(o.role, o.shape, o.names, o.device) for o in call.outputs] == [
        ("output", (4096, 64, 8192), ("T", "bs", "D*h"), "meta"),
        ("h_n", (16, 64, 4096), ("layers*D", "bs", "h"), "meta"),
        ("c_n", (16, 64, 4096), ("layers*D", "bs", "h"), "meta")]
    golden("trace/meta_lstm.txt", t.table() + "\n")


def test_meta_still_runs_torchs_own_argument_checks():
    with torch.device("meta"):
        model = nn.GRU(8, 16, num_layers=2)
        x = torch.randn(5, 3, 8)
        bad_h0 = torch.zeros(1, 3, 16)
    with pytest.raises(RuntimeError, match="Expected hidden size"):
        trace(model, x, bad_h0)


@pytest.mark.cuda
def test_cuda_trace():
    model = EmbedRNN(hidden=512).cuda()
    t = trace(model, tokens().cuda(), torch.zeros(1, 2, 512, device="cuda"))
    rnn = t.find(path="rnn")[0]
    assert rnn.outputs[0].device.startswith("cuda") and rnn.outputs[0].names == ("T", "bs", "D*h")


def _tensors_in(obj: Any, seen: set[int] | None = None) -> int:
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return 1
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(_tensors_in(getattr(obj, f.name), seen) for f in dataclasses.fields(obj))
    if isinstance(obj, dict):
        return sum(_tensors_in(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensors_in(v, seen) for v in obj)
    return 0


def test_trace_keeps_no_tensor_alive():
    model = CharRNNScratch(hidden=16)
    x, h = tokens(), torch.zeros(2, 16)
    refs = [weakref.ref(x), weakref.ref(h)]
    t = trace(model, x, h, ops=True)
    out, state = model(x, h)
    refs += [weakref.ref(out), weakref.ref(state)]
    del x, h, out, state
    gc.collect()
    assert [r() for r in refs] == [None] * 4
    assert _tensors_in(t) == 0
    assert len(t.calls) > 10


# ------------------------------------------------------------------ failures and cleanup
def test_matmul_shape_error_note_names_operands_and_line():
    model = BrokenCharRNN(hidden=512)
    with sv.dims(vocab=28, h=512), pytest.raises(RuntimeError, match="cannot be multiplied") as info:
        trace(model, tokens(), torch.zeros(2, 512), inputs_dims="bs T")
    note = "\n".join(info.value.__notes__)
    where = source_of("H @ W_xh + b_h)  # bug", trace_models)
    assert f"failing op: matmul at {where}: H = torch.tanh(X @ W_xh + H @ W_xh + b_h)" in note
    assert "H (bs?=2, h=512) @ W_xh (vocab=28, h=512)" in note
    assert "the contracted dims differ: H's last dim h=512 vs W_xh's rows vocab=28" in note
    assert "0 BrokenCharRNN: tokens (bs=2, T=5) int64, H (bs?=2, h=512) → ✗ raised" in note
    partial = info.value.shapeviz_trace
    assert isinstance(partial, Trace) and partial.error.startswith("RuntimeError")
    assert partial.calls[-1].error and partial.calls[-1].type == "matmul"


def test_note_lists_the_calls_traced_so_far():
    with pytest.raises(RuntimeError, match="hx should also be 3-D") as info:
        trace(EmbedRNN(hidden=512), tokens(), torch.zeros(2, 512))
    note = info.value.__notes__[-1]
    assert "raised after 3 recorded calls" in note
    assert "1   embedding (Embedding): input (T?=5, bs?=2) int64 → (T=5, bs=2, emb=20)" in note
    assert "2   rnn (RNN): input (T=5, bs=2, emb=20), h_0 (bs?=2, h?=512) → ✗ raised" in note


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_hooks_and_mode_removed_and_training_restored_after_exception():
    model = Dropper()
    model.train()
    model.rnn.eval()  # a mixed state must come back exactly
    with pytest.raises(RuntimeError, match="refused on purpose") as info:
        trace(model, torch.randn(99, 2, 3), ops=True)
    assert "raised after 3 recorded calls" in info.value.__notes__[-1]
    assert _no_hooks(model)
    assert torch._C._len_torch_function_stack() == 0
    assert (model.training, model.drop.training, model.rnn.training) == (True, True, False)
    # and on the normal path; the forward ran in eval mode (dropout off)
    x = torch.ones(2, 4, 3)
    t = trace(model, x)
    assert _no_hooks(model) and torch._C._len_torch_function_stack() == 0
    assert (model.training, model.drop.training, model.rnn.training) == (True, True, False)
    assert t.find(path="drop")[0].outputs[0].names == ("T", "bs", "emb")


def test_caught_errors_inside_the_forward_are_not_reported():
    class Careful(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with contextlib.suppress(RuntimeError):
                x @ x
            return x.sum(0)

    t = trace(Careful(), torch.zeros(2, 3), ops=True)
    assert all(not c.error for c in t.calls) and t.error == ""


def test_inputs_dims_is_checked():
    with pytest.raises(sv.SpecError, match="4 names for the first input, which has 3 dims"):
        trace(BiTagger(), torch.randn(3, 7, 6), inputs_dims="bs T emb x")
    t = trace(BiTagger(), torch.randn(3, 7, 6), inputs_dims="bs T")  # the leading dims, as watch(inputs=) names them
    assert t.calls[0].inputs[0].names[:2] == ("bs", "T") and t.sizes["bs"] == [3] and t.sizes["T"] == [7]
    with pytest.raises(sv.SpecError, match="not a dimension name"):
        trace(BiTagger(), torch.randn(3, 7, 6), inputs_dims="bs T 3x")
    with sv.dims(bs=4), pytest.raises(sv.SpecError, match=r"sv\.dims declared bs=4"):
        trace(BiTagger(), torch.randn(3, 7, 6), inputs_dims="bs T emb")


# ------------------------------------------------------------------ renderers
def test_json_round_trip_and_schema():
    with sv.dims(vocab=28):
        t = trace(EmbedRNN(hidden=512), tokens(), torch.zeros(1, 2, 512), ops=True)
    text = t.to_json()
    data = json.loads(text)
    rnn = t.find(path="rnn")[0].index
    assert data["schema"] == SCHEMA and data["calls"][rnn]["conventions"]["family"] == "RNN"
    back = Trace.from_json(text)
    assert back == t and back.table() == t.table()
    assert back.calls[rnn].conventions == t.calls[rnn].conventions
    assert isinstance(back.calls[rnn].conventions, sv.Conventions)
    with pytest.raises(sv.SpecError, match="not a shapeviz trace"):
        Trace.from_json(json.dumps({"schema": "other/1", "calls": []}))


def test_table_grouping_and_truncation():
    t = trace(CellOverDataset(), torch.randn(5, 2, 4), inputs_dims="T bs emb")
    assert len(t.table(group=False).splitlines()) == 1 + 1 + 6 + 1
    assert len(t.table().splitlines()) == 1 + 1 + 2 + 1
    short = t.table(group=False, max_rows=2)
    assert "… 4 more rows" in short
    assert str(t) == t.table()
    assert repr(t) == "Trace(CellOverDataset: 6 module calls, 0 ops)"


def test_table_is_deterministic_for_a_hand_made_trace():
    t = Trace(calls=[Call(0, "", "M", "module", [TensorInfo((2, 5), ("bs", "T"), label="x", dtype="int64")],
                          [TensorInfo((10, 3), ("T*bs", ""))])], model="M", sizes={"bs": [2], "T": [5]})
    assert t.table() == (
        "trace of M: 1 module call\n"
        "#  call  shapes\n"
        "0  M     x (bs=2, T=5) int64 → (T*bs=10, 3)\n"
        "sizes: bs=2, T=5")


def test_plot_returns_a_figure(tmp_path: Path):
    with sv.dims(vocab=28, h=64):
        t = trace(CharRNNScratch(), tokens(), torch.zeros(2, 64), ops=True, inputs_dims="bs T")
    fig = t.plot()
    out = tmp_path / "trace.png"
    fig.savefig(out)
    assert out.stat().st_size > 10_000
    texts = [txt.get_text() for ax in fig.axes for txt in ax.texts]
    assert any("× T=5" in s for s in texts) and any("vocab=28" in s for s in texts)
    assert fig.canvas.get_default_filetype() == "png"


@pytest.mark.parametrize("mod", [records_mod, json_reader_mod, naming_mod, oprules_mod, recorder_mod, session_mod,
                                 tensorbook_mod, modulecalls_mod, oprecorder_mod, modestack_mod, meta_mod,
                                 table_mod, plot_mod])
def test_doctests(mod: Any):
    assert doctest.testmod(mod).failed == 0
