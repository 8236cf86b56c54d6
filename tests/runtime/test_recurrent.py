"""sv.recurrent: a user's own recurrent layers and cells, declared once, checked like torch's.

Every rule is compared with a real module: a from-scratch RNN written as textbooks write it, gate-by-gate
LSTMs next to nn.LSTM, and cells next to torch's cells.
"""

from __future__ import annotations

import copy
import pickle
import random

import pytest
import torch
import torch.nn as nn

import shapeviz as sv
from shapeviz.core.declared import undeclare
from shapeviz.runtime import declared as declared_rt


class ScratchRNN(nn.Module):
    """The textbook from-scratch RNN: inputs (T, bs, emb), state a 1-tuple ((bs, h),)."""

    def __init__(self, num_inputs: int, num_hiddens: int) -> None:
        super().__init__()
        self.num_inputs, self.num_hiddens = num_inputs, num_hiddens
        self.W_xh = nn.Parameter(torch.randn(num_inputs, num_hiddens) * 0.1)
        self.W_hh = nn.Parameter(torch.randn(num_hiddens, num_hiddens) * 0.1)
        self.b_h = nn.Parameter(torch.zeros(num_hiddens))

    def forward(self, inputs, state=None):
        if state is None:
            state = (torch.zeros(inputs.shape[1], self.num_hiddens),)
        (h,) = state
        outputs = []
        for x_t in inputs:  # a (T, bs, emb) tensor iterates time
            h = torch.tanh(x_t @ self.W_xh + h @ self.W_hh + self.b_h)
            outputs.append(h)
        return torch.stack(outputs), (h,)


class MinGRU(nn.Module):
    """A batch-first minimal GRU (parallel form not needed here): x (bs, T, emb), h (bs, h)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.z = nn.Linear(input_size, hidden_size)
        self.h = nn.Linear(input_size, hidden_size)

    def forward(self, x, h=None):
        h = torch.zeros(x.shape[0], self.hidden_size) if h is None else h
        outs = []
        for t in range(x.shape[1]):
            z = torch.sigmoid(self.z(x[:, t]))
            h = (1 - z) * h + z * self.h(x[:, t])
            outs.append(h)
        return torch.stack(outs, 1), h


class ScanLayer(nn.Module):
    """A selective-scan-like layer: x (bs, T, d_inner), state (bs, d_inner, d_state)."""

    def __init__(self, d_inner: int, d_state: int) -> None:
        super().__init__()
        self.d_inner, self.d_state = d_inner, d_state
        self.A = nn.Parameter(-torch.rand(d_inner, d_state))

    def forward(self, x, s=None):
        s = torch.zeros(x.shape[0], self.d_inner, self.d_state) if s is None else s
        ys = []
        for t in range(x.shape[1]):
            s = s * torch.exp(self.A) + x[:, t, :, None]
            ys.append(s.sum(-1))
        return torch.stack(ys, 1), s


@pytest.fixture(autouse=True)
def _declarations():
    sv.recurrent(ScratchRNN, input="T bs emb", state=("bs h",), sizes={"emb": "num_inputs", "h": "num_hiddens"})
    sv.recurrent(MinGRU, input="bs T emb", state="bs h", output="bs T h",
                 sizes={"emb": "input_size", "h": "hidden_size"})
    sv.recurrent(ScanLayer, input="bs T d_inner", state="bs d_inner d_state",
                 sizes={"d_inner": "d_inner", "d_state": "d_state"})
    yield
    for cls in (ScratchRNN, MinGRU, ScanLayer):
        undeclare(cls)


def _code(fn) -> str | None:
    try:
        fn()
    except sv.ShapeError as e:
        return e.code
    return None


def test_scratch_rnn_right_calls_run_silent_and_unchanged():
    torch.manual_seed(0)
    m = ScratchRNN(28, 32)
    x, h0 = torch.randn(5, 4, 28), (torch.zeros(4, 32),)
    want = m(x, h0)[0]
    with sv.watch(m):
        got = m(x, h0)[0]
        m(x)  # no state: the module makes its own
    assert torch.equal(want, got)


def test_scratch_rnn_mistakes_caught_with_codes():
    m = ScratchRNN(28, 32)
    with sv.watch(m):
        assert _code(lambda: m(torch.randn(4, 7, 28), (torch.zeros(4, 32),))) == "batch_first_swap"
        assert _code(lambda: m(torch.randn(7, 4, 28), (torch.zeros(3, 32),))) == "batch_mismatch"
        assert _code(lambda: m(torch.randn(7, 4, 27))) == "input_size"
        assert _code(lambda: m(torch.randn(7, 4, 28), torch.zeros(4, 32))) == "state_type"  # not the 1-tuple
        assert _code(lambda: m(torch.randn(7, 4, 28), (torch.zeros(4, 31),))) == "hidden_size"
        assert _code(lambda: m(torch.randn(7, 4, 28), (torch.zeros(1, 4, 32),))) == "hidden_ndim"
        assert _code(lambda: m(torch.randn(4, 28))) == "input_ndim"
        assert _code(lambda: m(torch.randn(7, 4, 28).double())) == "dtype"


def test_scratch_rnn_swap_message_names_the_class_the_declaration_and_the_fix():
    m = ScratchRNN(28, 32)
    with sv.watch(m), pytest.raises(sv.ShapeError) as info:
        m(torch.randn(4, 7, 28), (torch.zeros(4, 32),))
    text = str(info.value)
    assert "ScratchRNN(emb=28, h=32)" in text
    assert "declared with sv.recurrent(ScratchRNN, input='T bs emb', state=('bs h',))" in text
    assert "hint: x = x.transpose(0, 1)  # (bs, T, emb) -> (T, bs, emb)" in text
    fixed = torch.randn(4, 7, 28).transpose(0, 1)
    with sv.watch(m):
        m(fixed, (torch.zeros(4, 32),))  # the hint's fix runs


def test_scratch_rnn_swap_without_state_needs_declared_sizes():
    class LM(nn.Module):  # tokens (bs, T) -> one-hot (bs, T, vocab), fed without the transpose
        def __init__(self) -> None:
            super().__init__()
            self.rnn = ScratchRNN(28, 32)

        def forward(self, tokens):
            return self.rnn(nn.functional.one_hot(tokens, 28).float())

    lm = LM()
    tokens = torch.randint(0, 28, (4, 7))
    with sv.watch(lm):
        lm(tokens)  # no evidence: bs=4 and T=7 are just sizes, so no alarm
    with sv.watch(lm, inputs="bs T"), pytest.raises(sv.ShapeError) as info:
        lm(tokens)
    assert info.value.code == "batch_first_swap"
    assert "declared sizes bs=4, T=7" in str(info.value)


def test_batch_first_declared_layer_caught_seq_first():
    m = MinGRU(6, 8)
    with sv.watch(m):
        m(torch.randn(3, 5, 6), torch.zeros(3, 8))
        assert _code(lambda: m(torch.randn(5, 3, 6), torch.zeros(3, 8))) == "batch_first_swap"
        assert _code(lambda: m(torch.randn(3, 5, 6), (torch.zeros(3, 8),))) == "state_type"
        assert _code(lambda: m(torch.randn(3, 5, 6), torch.zeros(2, 8))) == "batch_mismatch"


def test_state_with_more_dims_checked_dim_by_dim():
    m = ScanLayer(6, 4)
    with sv.checking():
        m(torch.randn(2, 5, 6), torch.zeros(2, 6, 4))
        assert _code(lambda: m(torch.randn(2, 5, 6), torch.zeros(2, 6, 3))) == "hidden_size"
        assert _code(lambda: m(torch.randn(2, 5, 6), torch.zeros(2, 4, 6))) == "hidden_size"
        assert _code(lambda: m(torch.randn(2, 5, 6), torch.zeros(6, 4))) == "hidden_ndim"
    with pytest.raises(sv.ShapeError) as info, sv.checking():
        m(torch.randn(2, 5, 6), torch.zeros(2, 6, 3))
    assert "dim 2 (d_state) is 3, but ScanLayer's d_state is 4" in str(info.value)


def test_declared_cells_tuple_state_and_loops():
    @sv.recurrent(input="bs emb", state=("bs h", "bs h"), cell=True, sizes={"emb": "input_size", "h": "hidden_size"})
    class MyLSTMCell(nn.Module):
        def __init__(self, input_size: int, hidden_size: int) -> None:
            super().__init__()
            self.input_size, self.hidden_size = input_size, hidden_size
            self.lin = nn.Linear(input_size + hidden_size, 4 * hidden_size)

        def forward(self, x, state):
            h, c = state
            i, f, g, o = self.lin(torch.cat([x, h], -1)).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c

    try:
        cell = MyLSTMCell(6, 8)
        h = c = torch.zeros(3, 8)
        with sv.checking():
            for x_t in torch.randn(5, 3, 6):
                h, c = cell(x_t, (h, c))
            assert _code(lambda: cell(torch.randn(3, 6), (h, c[:2]))) == "batch_mismatch"
            assert _code(lambda: cell(torch.randn(3, 7), (h, c))) == "input_size"
            assert _code(lambda: cell(torch.randn(3, 6), h)) == "state_type"
            assert _code(lambda: cell(torch.randn(5, 3, 6), (h, c))) == "input_ndim"
        x_bf = torch.randn(4, 7, 6)  # (bs=4, T=7, emb): a loop over it walks the batch
        h = c = torch.zeros(4, 8)
        with sv.dims(bs=4, T=7), sv.checking(), pytest.raises(sv.ShapeError) as info:
            for x_t in x_bf:
                cell(x_t, (h[:7], c[:7]))
        assert info.value.code in ("batch_first_swap", "batch_mismatch")
    finally:
        undeclare(MyLSTMCell)


def test_bad_declarations_say_what_is_valid():
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.n = 3

    with pytest.raises(sv.SpecError, match="unknown dim 'vocab' in input; known: bs, emb, T"):
        sv.recurrent(M, input="T bs vocab", state="bs emb", sizes={"emb": "n"})
    with pytest.raises(sv.SpecError, match="names the batch dim bs once"):
        sv.recurrent(M, input="T bs emb", state="emb", sizes={"emb": "n"})
    with pytest.raises(sv.SpecError, match="must name the time dim T"):
        sv.recurrent(M, input="bs emb", state="bs emb", sizes={"emb": "n"})
    with pytest.raises(sv.SpecError, match="has no T"):
        sv.recurrent(M, input="T bs emb", state="bs emb", cell=True, sizes={"emb": "n"})
    with pytest.raises(sv.SpecError, match="not a dim name"):
        sv.recurrent(M, input="T bs __import__('os')", state="bs emb", sizes={"emb": "n"})

    class MyGRU(nn.GRU):
        pass

    for torch_own, said in ((nn.GRU, "is torch's nn.GRU"), (MyGRU, "subclasses torch's nn.GRU"),
                            (nn.LSTMCell, "is torch's nn.LSTMCell")):  # checked by torch's conventions already
        with pytest.raises(sv.SpecError, match=said):
            sv.recurrent(torch_own, input="T bs emb", state="bs h", sizes={"emb": "input_size", "h": "hidden_size"})
    sv.recurrent(M, input="T bs emb", state="bs emb", sizes={"emb": "missing"})
    try:
        with pytest.raises(sv.SpecError, match="has no attribute 'missing'; its int attributes: n"):
            sv.conventions(M())
        sv.recurrent(M, input="T bs emb", state="bs emb", sizes={"emb": lambda m: m.n * 2})  # replaces
        assert sv.conventions(M()).shapes(T=2, bs=1)["input"] == (2, 1, 6)
    finally:
        undeclare(M)


def test_patches_come_off_on_every_path():
    own = ScratchRNN.__dict__["forward"]
    inherited = "forward" in ScanLayer.__dict__
    m = ScratchRNN(3, 4)
    with pytest.raises(sv.ShapeError), sv.watch(m):
        assert ScratchRNN.__dict__["forward"] is not own
        m(torch.randn(2, 5, 3), (torch.zeros(2, 4),))
    assert ScratchRNN.__dict__["forward"] is own
    assert ("forward" in ScanLayer.__dict__) == inherited
    assert not declared_rt._ORIGINAL

    class Sub(ScratchRNN):  # inherits forward: the wrapper sits on the declared class only
        pass

    with sv.checking():
        assert _code(lambda: Sub(3, 4)(torch.randn(5, 2, 3), (torch.zeros(3, 4),))) == "batch_mismatch"
    assert "forward" not in Sub.__dict__


def test_watched_declared_module_pickles_and_copies():
    m = ScratchRNN(3, 4)
    with sv.watch(m):
        clone = copy.deepcopy(m)
        again = pickle.loads(pickle.dumps(m))
        clone(torch.randn(5, 2, 3))
        again(torch.randn(5, 2, 3))
        buf = __import__("io").BytesIO()
        torch.save(m, buf)


def test_explain_and_conventions_of_a_declared_layer():
    text = str(sv.explain(ScratchRNN(28, 32), T=5, bs=2))
    assert text.splitlines()[0] == "ScratchRNN(emb=28, h=32)"
    assert "input     (T, bs, emb)  (T=5, bs=2, emb=28)" in text
    assert "the state is a tuple of 1: h_0 (bs, h); pass (h0,), not a bare tensor" in text
    c = sv.conventions(MinGRU(6, 8))
    assert c.symbolic == {"input": "bs T emb", "h_0": "bs h", "output": "bs T h", "h_n": "bs h"}
    out, h_n = MinGRU(6, 8)(torch.randn(3, 5, 6))
    shapes = c.shapes(T=5, bs=3)
    assert tuple(out.shape) == shapes["output"] and tuple(h_n.shape) == shapes["h_n"]


# ------------------------------------------------------------------ the same verdict and message as torch's own
class GateLSTM(nn.Module):
    """A gate-by-gate LSTM stack with torch's conventions (seq-first; bidirectional where asked)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.directions = 2 if bidirectional else 1
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x, state=None):  # only the check matters here: the shapes torch's LSTM returns
        T, bs = x.shape[0], x.shape[1]
        h = torch.zeros(self.num_layers * self.directions, bs, self.hidden_size)
        return torch.zeros(T, bs, self.directions * self.hidden_size), (h, h)


class GateGRU(GateLSTM):
    def forward(self, x, state=None):
        out, (h, _) = super().forward(x, state)
        return out, h


def _faults(rng: random.Random, lstm: bool, L: int, bs: int, T: int, emb: int, h: int) -> list:
    x = torch.randn(T, bs, emb)
    good = (torch.zeros(L, bs, h), torch.zeros(L, bs, h)) if lstm else torch.zeros(L, bs, h)

    def st(*shape):
        return (torch.zeros(*shape), torch.zeros(L, bs, h)) if lstm else torch.zeros(*shape)

    return [(x, good), (x, None), (x.transpose(0, 1), good), (torch.randn(T, bs, emb + 1), good),
            (x, st(L, bs + 1, h)), (x, st(bs, h)), (x, st(L + 1, bs, h)), (x, st(L, bs, h + 2)),
            (x, st(bs, L, h)), (x, (good, good) if not lstm else good[0]), (x.double(), good),
            (torch.randn(T, bs, emb, 1), good), (torch.randn(0, bs, emb), None)]


_REBUILD = ("hint: or build the layer with batch_first", "hint: or declare the layer the other way",
            "hint: or use a cell for one step", "hint: or use the layer")


def _same_but_rebuild(msg: str) -> str:
    """The message apart from the one hint that differs by nature: torch's class is rebuilt with another
    ``batch_first``, a declared one is declared the other way (and torch's own cells/layers are not suggested)."""
    return "\n".join(line for line in msg.splitlines() if not line.startswith(_REBUILD))


@pytest.mark.parametrize("seed", range(12))
def test_gate_by_gate_layers_match_torch_verdicts_and_messages(seed):
    rng = random.Random(seed)
    lstm = seed % 2 == 0
    ours_cls, torch_cls = (GateLSTM, nn.LSTM) if lstm else (GateGRU, nn.GRU)
    name = ours_cls.__name__
    state = ("layers*D bs h", "layers*D bs h") if lstm else "layers*D bs h"
    sv.recurrent(ours_cls, input="T bs emb", state=state, output="T bs D*h",
                 sizes={"emb": "input_size", "h": "hidden_size", "layers": "num_layers", "D": "directions"})
    try:
        emb, h, layers, bi = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 3), rng.random() < 0.5
        T, bs = rng.randint(2, 6), rng.randint(2, 6)
        while bs == T:
            bs = rng.randint(2, 6)
        ours, theirs = ours_cls(emb, h, layers, bi), torch_cls(emb, h, layers, bidirectional=bi)
        caught = 0
        for x, s in _faults(rng, lstm, layers * (2 if bi else 1), bs, T, emb, h):
            got = []
            for mod in (ours, theirs):
                try:
                    with sv.checking():
                        mod(x, s)
                    got.append(None)
                except sv.ShapeError as e:
                    msg = str(e).replace(name, torch_cls.__name__).replace(name.lower(), torch_cls.__name__.lower())
                    got.append((e.code, _same_but_rebuild(msg)))
                except RuntimeError:  # torch's own error after shapeviz found nothing
                    got.append("torch")
            if got[1] == "torch":  # shapeviz let torch say it: ours must not pass it either
                assert got[0] in (None, "torch")
                continue
            assert got[0] == got[1], (tuple(x.shape), got)
            caught += got[0] is not None
        assert caught >= 9  # the faults were judged, not waved through
    finally:
        undeclare(ours_cls)


def test_the_readme_example_raises_what_the_readme_shows():
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    body = readme.split("## Your own recurrent layers\n", 1)[1].split("\n## ", 1)[0]
    code, shown = re.findall(r"```[a-z]*\n(.*?)```", body, flags=re.S)[:2]
    namespace: dict = {"__name__": "readme"}
    try:
        with pytest.raises(sv.ShapeError) as info:
            exec(compile(code, "README.md", "exec"), namespace)  # the README's own example, not user input
    finally:
        undeclare(namespace["RNNScratch"])
    assert f"shapeviz.ShapeError: {info.value}\n" == shown


def test_check_call_takes_declared_layers_by_place_or_by_their_own_names():
    m = ScratchRNN(28, 32)
    sv.check_call(m, torch.randn(7, 4, 28), (torch.zeros(4, 32),))
    sv.check_call(m, inputs=torch.randn(7, 4, 28), state=(torch.zeros(4, 32),))
    assert _code(lambda: sv.check_call(m, torch.randn(4, 7, 28), (torch.zeros(4, 32),))) == "batch_first_swap"
    assert _code(lambda: sv.check_call(m, torch.randn(7, 4, 28), state=(torch.zeros(3, 32),))) == "batch_mismatch"
    assert _code(lambda: sv.check_call(MinGRU(6, 8), torch.randn(3, 5, 7))) == "input_size"


def test_trace_unroll_and_dry_run_of_declared_layers(tmp_path):
    class Both(nn.Module):  # a batch-first declared layer, then a seq-first one on the transposed output
        def __init__(self) -> None:
            super().__init__()
            self.gru = MinGRU(6, 8)
            self.rnn = ScratchRNN(8, 5)

        def forward(self, x):
            out, _ = self.gru(x)
            return self.rnn(out.transpose(0, 1), (torch.zeros(x.shape[0], 5),))

    model = Both()
    trace = sv.trace(model, torch.randn(3, 7, 6), inputs_dims="bs T emb")
    table = trace.table()
    assert "gru (MinGRU)" in table and "input (bs=3, T=7, emb=6) → output (bs=3, T=7, h=8), h_n (bs=3, h=8)" in table
    assert "h_n (bs=3, h=8)" in table and "h_0 (bs=3, h=5)" in table  # named by the declarations
    source = trace.unroll().source
    assert "MinGRU(emb=6, h=8)" in source and "ScratchRNN(emb=8, h=5)" in source
    assert "h_0[0] = layer 0" not in source  # a declared (bs, h) state has no layers*D stack to index
    assert "not declared" in source  # ScratchRNN's output was not declared: drawn as such, never guessed
    ok = sv.dry_run(model, "bs=3,T=7,emb=6")
    assert ok.error is None

    class Forgot(nn.Module):  # the transpose between the two forgotten
        def __init__(self) -> None:
            super().__init__()
            self.gru = MinGRU(6, 8)
            self.rnn = ScratchRNN(8, 5)

        def forward(self, x):
            out, _ = self.gru(x)
            return self.rnn(out, (torch.zeros(x.shape[0], 5),))

    run = sv.dry_run(Forgot(), "bs=3,T=7,emb=6")
    assert run.error is not None and run.error.code == "batch_first_swap"
    assert "rnn: ScratchRNN(emb=8, h=5)" in str(run.error)


@pytest.mark.parametrize("make, good, bad, code", [
    (lambda: ScratchRNN(3, 4), (torch.randn(5, 2, 3), (torch.zeros(2, 4),)),
     (torch.randn(5, 2, 3), (torch.zeros(3, 4),)), "batch_mismatch"),
    (lambda: MinGRU(3, 4), (torch.randn(2, 5, 3), torch.zeros(2, 4)),
     (torch.randn(2, 5, 3), torch.zeros(2, 6)), "hidden_size"),
    (lambda: ScanLayer(3, 2), (torch.randn(2, 5, 3), torch.zeros(2, 3, 2)),
     (torch.randn(2, 5, 3), torch.zeros(2, 2, 3)), "hidden_size"),
])
def test_declared_layers_are_checked_while_dynamo_compiles(make, good, bad, code):
    """The one rule, read with dynamo's comparisons: no graph break on a right call, the same output; a wrong
    call raises the eager ShapeError (dynamo runs the frame eagerly) and, under fullgraph=True, dynamo's error
    quotes it; declared sizes (sv.dims) give the same evidence as eagerly."""
    torch._dynamo.reset()  # fullgraph first: after a frame ran eagerly, dynamo compiles its callees one by one
    torch.manual_seed(0)
    m = make()
    assert _code(lambda: sv.check_call(m, *bad)) == code
    with sv.watch(m):
        explained = torch._dynamo.explain(m)(*good)
        assert explained.graph_break_count == 0, explained.break_reasons
        strict = torch.compile(m, backend="eager", dynamic=False, fullgraph=True)
        torch.testing.assert_close(strict(*good), m(*good))
        with pytest.raises(Exception) as info:
            strict(*bad)
        assert f"shapeviz.ShapeError: [{code}]" in str(info.value)
    torch._dynamo.reset()
    with sv.checking():
        compiled = torch.compile(make(), backend="eager", dynamic=False)
        compiled(*good)
        assert _code(lambda: compiled(*bad)) == code


def test_a_swap_is_caught_while_compiling_from_declared_sizes():
    torch._dynamo.reset()
    m = ScratchRNN(3, 4)
    compiled = torch.compile(m, backend="eager", dynamic=False)
    x = torch.randn(2, 5, 3)  # (bs=2, T=5, emb): batch-first into a seq-first layer, no state given
    with sv.dims(bs=2, T=5):
        assert _code(lambda: sv.check_call(m, x)) == "batch_first_swap"  # eagerly
    with sv.watch(m):
        with sv.dims(bs=2, T=5):  # the sizes declared when dynamo traces (README: torch.compile)
            assert _code(lambda: compiled(x)) == "batch_first_swap"
        torch._dynamo.reset()
        compiled(x)  # no evidence: silent, as eagerly


def test_a_repeat_call_of_a_declared_layer_rereads_its_settings_and_weight():
    """The hot path of a declared layer (hotpath.declared_hot) accepts a repeat call only when its settings, the
    weight it found one module down and the state still agree: each change is caught on the next call."""
    m = MinGRU(3, 4)  # its weight: m.z.weight, one module down
    x, h = torch.randn(2, 5, 3), torch.zeros(2, 4)
    with sv.watch(m):
        m(x, h)
        m(x, h)  # the hot path
        m.z = nn.Linear(3, 4).double()  # a new submodule of another dtype
        assert _code(lambda: m(x, h)) == "dtype"
        m.z = nn.Linear(3, 4)
        m(x, h)
        m.hidden_size = 5  # a declared size changed: the old state no longer fits
        assert _code(lambda: m(x, h)) == "hidden_size"
        m.hidden_size = 4
        m(x, h)
        assert _code(lambda: m(x, (h,))) == "state_type"  # a 1-tuple where one tensor is declared
        assert _code(lambda: m(x, torch.zeros(3, 4))) == "batch_mismatch"


def test_a_declared_layers_checker_is_check_call_bound_to_it():
    layer = MinGRU(4, 6)
    check = sv.checker(layer)
    check(torch.randn(3, 5, 4), torch.zeros(3, 6))  # (bs=3, T=5, emb=4), h (bs=3, h=6)
    check(torch.randn(3, 5, 4), h=torch.zeros(3, 6))  # the layer's own argument name
    assert _code(lambda: check(torch.randn(3, 5, 4), torch.zeros(2, 6))) == _code(
        lambda: sv.check_call(layer, torch.randn(3, 5, 4), torch.zeros(2, 6))) is not None


def test_a_layer_declared_without_its_output_runs_under_ops_tracking():
    """``output=`` is optional in ``sv.recurrent``: the ops tracking names what was declared and never fails on
    what was not (it raised a KeyError from inside shapeviz)."""
    rnn = ScratchRNN(4, 6)
    x = torch.randn(5, 3, 4)
    want = rnn(x)[0]
    for block in (lambda: sv.checking(ops=True), lambda: sv.watch(rnn, ops=True),
                  lambda: sv.checking(inputs="T bs emb", ops=True)):
        with block():
            out, (h,) = rnn(x)
        assert torch.equal(out, want) and h.shape == (3, 6)
    with sv.checking(ops=True):
        assert _code(lambda: rnn(x, (torch.zeros(3, 7),))) == "hidden_size"
