"""torch.compile with checking on: checked while dynamo traces, zero graph breaks, same results."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch._dynamo.testing import CompileCounter
from torch._dynamo.utils import counters

import shapeviz as sv


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 16, num_layers=2)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (T, bs, 16); h_n, c_n: (2, bs, 16)
        return self.fc(out)


class EmbedTagger(nn.Module):
    """Takes (bs, T) token ids; the seq-first LSTM gets the embedding untransposed: a silent mistake."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.rnn = nn.LSTM(8, 16)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(ids))  # (bs, T, 8) read as (T, bs, 8)
        return out


@pytest.fixture(autouse=True)
def _dynamo():
    old = torch._dynamo.config.allow_rnn
    torch._dynamo.config.allow_rnn = True  # dynamo needs this for nn.LSTM, with or without shapeviz
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
    torch._dynamo.config.allow_rnn = old


def _on(how: str, model: nn.Module):  # type: ignore[no-untyped-def]
    return sv.watch(model) if how == "watch" else sv.checking()


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_checking_adds_no_graph_break(backend):
    model, x = Tagger(), torch.randn(5, 3, 8)
    expected = model(x)
    with sv.checking(), sv.watch(model):
        explanation = torch._dynamo.explain(model)(x)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1
        compiled = torch.compile(model, fullgraph=True, backend=backend)
        # torch 2.13's inductor cannot compile an LSTM with autograd on CPU (mkldnn_rnn_layer),
        # with or without shapeviz: compare in inference mode
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), expected, rtol=1e-4, atol=1e-5)
        with pytest.raises(sv.ShapeError):  # eager calls are still checked
            model(torch.randn(5, 3, 9))


@pytest.mark.parametrize("how", ["watch", "checking", "enable"])
def test_no_graph_break_and_same_result_each_way_of_checking(how):
    model, x = Tagger(), torch.randn(5, 3, 8)
    expected = model(x)
    if how == "enable":
        sv.enable()
    try:
        with sv.watch(model) if how == "watch" else sv.checking() if how == "checking" else _nothing():
            explanation = torch._dynamo.explain(model)(x)
            assert explanation.graph_break_count == 0, explanation.break_reasons
            torch._dynamo.reset()
            counter = CompileCounter()
            compiled = torch.compile(model, backend=counter, fullgraph=True)
            torch.testing.assert_close(compiled(x), expected)
            assert counter.frame_count == 1
    finally:
        sv.disable()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("how", ["watch", "checking"])
def test_wrong_input_size_is_a_shape_error_in_compiled_code(how):
    model = Tagger()
    with _on(how, model):
        compiled = torch.compile(model, backend="eager")
        compiled(torch.randn(5, 3, 8))
        with pytest.raises(sv.ShapeError) as info:  # not torch's RuntimeError
            compiled(torch.randn(5, 3, 9))
        assert info.value.code == "input_size"


@pytest.mark.parametrize("how", ["watch", "checking"])
def test_fullgraph_failure_carries_the_shape_error(how):
    model = Tagger()
    with _on(how, model):
        compiled = torch.compile(model, backend="eager", fullgraph=True)
        with pytest.raises(Exception) as info:
            compiled(torch.randn(5, 3, 9))
        msg = str(info.value)
        assert "[input_size]" in msg and "LSTM(8, 16, num_layers=2)" in msg, msg
        assert "last dim is 9, but input_size is 8" in msg, msg


def test_batch_first_swap_with_declared_inputs_is_caught_at_compile_time():
    model, ids = EmbedTagger(), torch.randint(0, 20, (3, 5))  # (bs=3, T=5)
    for fullgraph in (False, True):
        torch._dynamo.reset()
        with sv.dims(bs=3, T=5):
            compiled = torch.compile(model, backend="eager", fullgraph=fullgraph)
            with sv.checking(), pytest.raises(Exception) as info:
                compiled(ids)
        if fullgraph:
            assert "[batch_first_swap]" in str(info.value), str(info.value)
        else:
            assert isinstance(info.value, sv.ShapeError) and info.value.code == "batch_first_swap"
    torch._dynamo.reset()
    with sv.checking():  # without the declaration the swap is silent, compiled or not
        torch.compile(model, backend="eager", fullgraph=True)(ids)


def test_recompile_for_a_new_batch_size_rechecks():
    model = Tagger()
    counter = CompileCounter()
    with sv.watch(model):
        compiled = torch.compile(model, backend=counter, dynamic=False)
        compiled(torch.randn(5, 3, 8))
        compiled(torch.randn(5, 4, 8))  # a new batch size: a recompile, checked again
        assert counter.frame_count == 2
        h0 = (torch.zeros(2, 3, 16), torch.zeros(2, 3, 16))  # a batch-3 state, later given a batch of 6
        rnn = torch.compile(model.rnn, backend="eager", dynamic=False)
        rnn(torch.randn(5, 3, 8), h0)
        with pytest.raises(sv.ShapeError) as info:
            rnn(torch.randn(5, 6, 8), h0)
        assert info.value.code == "batch_mismatch"


@pytest.mark.parametrize("how", ["watch", "checking"])
def test_an_eager_call_between_compiled_ones_recompiles_nothing(how):
    """The traced check reads no plan of shapeviz's (what an eager check makes): a guard on one would make the
    compiled model recompile after the module's first eager call."""
    model, x = Tagger(), torch.randn(5, 3, 8)
    counter = CompileCounter()
    with _on(how, model):
        compiled = torch.compile(model, backend=counter)
        compiled(x)
        model(x)  # eager: checked, its plan made
        compiled(x)
        assert counter.frame_count == 1
        with pytest.raises(sv.ShapeError, match=r"\[input_size\]"):
            compiled(torch.randn(5, 3, 9))


def _compiles(model: nn.Module, shapes: list[tuple[int, ...]], mark: bool) -> tuple[int, list[torch.Tensor]]:
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter)
    outs = []
    for i, shape in enumerate(shapes):
        x = torch.randn(*shape)
        if mark and i == 0:
            torch._dynamo.mark_dynamic(x, 1)
        outs.append(compiled(x))
    return counter.frame_count, outs


@pytest.mark.parametrize("mark", [True, False], ids=["mark_dynamic", "automatic_dynamic"])
def test_dynamic_batch_no_false_error_no_extra_recompile(mark):
    model = Tagger()
    shapes = [(5, 3, 8), (5, 4, 8), (5, 7, 8), (5, 2, 8)]
    torch.manual_seed(0)
    plain, plain_outs = _compiles(model, shapes, mark)
    torch.manual_seed(0)
    with sv.watch(model), sv.checking():
        checked, checked_outs = _compiles(model, shapes, mark)
    assert checked == plain
    for a, b in zip(plain_outs, checked_outs, strict=True):
        torch.testing.assert_close(a, b)
    counters.clear()


def test_dynamic_batch_still_checks_static_dims():
    model = Tagger()
    with sv.watch(model):
        compiled = torch.compile(model, backend="eager")
        x = torch.randn(5, 3, 8)
        torch._dynamo.mark_dynamic(x, 1)
        compiled(x)
        bad = torch.randn(5, 4, 9)
        with pytest.raises(sv.ShapeError) as info:
            compiled(bad)
        assert info.value.code == "input_size"


# ------------------------------------------------------ watch(inputs=) and dynamic sizes, compiled as eager
def test_watch_inputs_names_the_compiled_root_input():
    from shapeviz.core.dimensions import declared

    model = EmbedTagger()
    compiled = torch.compile(model, backend="eager")
    with sv.watch(model, inputs="bs T"):
        with pytest.raises(sv.ShapeError, match=r"\[batch_first_swap\]"):
            compiled(torch.randint(0, 20, (4, 9)))  # the eager check catches it: so does the compiled one
    assert declared() is None  # nothing the traced root declared outlives its call
    with sv.checking():
        nn.LSTM(8, 16)(torch.randn(4, 9, 8))  # an unrelated correct call afterwards: silent


def test_watch_inputs_compiled_correct_calls_are_silent():
    from shapeviz.core.dimensions import declared

    model = Tagger()
    compiled = torch.compile(model, backend="eager")
    with sv.watch(model, inputs="T bs"):
        for T, bs in [(9, 4), (7, 3), (5, 2), (4, 4), (2, 9)]:  # recompiles, automatic dynamic, T == bs
            compiled(torch.randn(T, bs, 8))
    assert declared() is None


def test_watch_inputs_fullgraph_quotes_the_shape_error():
    model = EmbedTagger()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with sv.watch(model, inputs="bs T"), pytest.raises(Exception, match=r"\[batch_first_swap\]"):
        compiled(torch.randint(0, 20, (4, 9)))


def test_a_size_made_dynamic_is_still_checked():
    model = Tagger()
    model.rnn.input_size = 9  # configured for 9 features, fed 8
    compiled = torch.compile(model, backend="eager", dynamic=True)
    with sv.watch(model), pytest.raises(sv.ShapeError, match=r"\[input_size\]"):
        compiled(torch.randn(5, 3, 8))


def test_watch_inputs_adds_no_graph_break_and_names_a_model_compiled_in_place() -> None:
    model, x = Tagger(), torch.randn(5, 3, 8)
    with sv.watch(model, inputs="T bs"):
        explanation = torch._dynamo.explain(model)(x)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1
    torch._dynamo.reset()
    tagger = EmbedTagger()
    tagger.compile(backend="eager")  # compiled before it is watched: its name is read at trace time
    with sv.watch(tagger, inputs="bs T"), pytest.raises(sv.ShapeError, match=r"\[batch_first_swap\]"):
        tagger(torch.randint(0, 20, (4, 9)))
    with sv.watch(tagger, inputs="T bs"):
        tagger(torch.randint(0, 20, (9, 4)))  # (T=9, bs=4) ids: what the seq-first layer reads, no alarm


def test_a_checker_in_compiled_code_adds_no_graph_break_and_raises_the_shape_error() -> None:
    model = Tagger()
    check = sv.checker(model.rnn)

    def step(x: torch.Tensor) -> torch.Tensor:
        check(x)
        return model(x)

    explanation = torch._dynamo.explain(step)(torch.randn(5, 3, 8))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(step, backend="eager")
    torch.testing.assert_close(compiled(torch.ones(5, 3, 8)), model(torch.ones(5, 3, 8)))
    with pytest.raises(sv.ShapeError) as info:
        compiled(torch.randn(5, 3, 9))
    assert info.value.code == "input_size"


def test_setting_an_environment_variable_recompiles_nothing_and_the_kill_switch_still_holds(monkeypatch) -> None:
    """The kill switch is read while dynamo traces as a constant: no guard on the environment, so setting
    any variable later does not recompile a checked model; SHAPEVIZ_DISABLE set when it is traced turns the
    check off for what that trace compiles."""
    model, x = Tagger(), torch.randn(5, 3, 8)
    counter = CompileCounter()
    with sv.watch(model):
        compiled = torch.compile(model, backend=counter)
        compiled(x)
        monkeypatch.setenv("SHAPEVIZ_UNRELATED_TEST_VARIABLE", "1")
        compiled(x)
        assert counter.frame_count == 1
        torch._dynamo.reset()
        monkeypatch.setenv("SHAPEVIZ_DISABLE", "1")
        compiled = torch.compile(model, backend="eager")
        with pytest.raises(RuntimeError) as info:  # torch's own error: nothing of shapeviz's ran
            compiled(torch.randn(5, 3, 9))
        assert not isinstance(info.value, sv.ShapeError)
        torch._dynamo.reset()
        monkeypatch.delenv("SHAPEVIZ_DISABLE")
        compiled = torch.compile(model, backend="eager")
        with pytest.raises(sv.ShapeError, match=r"\[input_size\]"):
            compiled(torch.randn(5, 3, 9))


class TransposeThenLSTM(nn.Module):
    """An op before the layer: under ``ops=True`` dynamo traces the flow's torch function mode at each op."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x.transpose(0, 1))[1][0][-1]  # x (bs, T, f) -> (T, bs, f)


@pytest.mark.parametrize("how", ["watch", "checking"])
def test_ops_mode_stands_aside_while_dynamo_traces(how: str) -> None:
    """``ops=True`` on a compiled model: the flow stands aside while dynamo traces (no graph break, the eager
    result; it used to make dynamo call ``torch.zeros`` in ``LSTM.forward`` with its arguments mixed up), and the
    layer's own check still runs there: a wrong ``input_size`` is a ``ShapeError``."""
    model, x = TransposeThenLSTM(), torch.randn(3, 5, 4)
    expected = model(x)
    with sv.watch(model, ops=True) if how == "watch" else sv.checking(ops=True):
        explanation = torch._dynamo.explain(model)(x)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        torch._dynamo.reset()
        compiled = torch.compile(model, backend="eager")
        torch.testing.assert_close(compiled(x), expected)
        with pytest.raises(sv.ShapeError) as info:
            compiled(torch.randn(3, 5, 6))
        assert info.value.code == "input_size"
