"""No false alarm on correct code: an alarm needs evidence that holds, not a size that happens to match.

Small models of our own for the patterns real code showed: a user class named like a torch layer, layers
whose batch is a product of the root batch (skip-GRU ``bs*skip``, dilated ``rate*bs``, beam ``bs*k``),
declarations made for something else (a bare layer under ``checking(inputs=)``, another task, a generator
finished in another thread) and autocast. Each false-alarm model runs over a sweep of sizes that includes
the coincidences and must stay silent; each mistake still gets its code.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import warnings

import pytest
import torch
import torch.nn as nn

import shapeviz as sv


def silent(fn, *args, **kwargs):
    """Run ``fn``: no ShapeError, no warning of any kind."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


# ------------------------------------------------------------------ 1. a class named like a torch layer
class LSTM(nn.Module):  # the usual tutorial name
    def __init__(self, vocab: int = 20, emb: int = 8, h: int = 6) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, h, batch_first=True)
        self.out = nn.Linear(h, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(self.embed(tokens))
        return self.out(y)


class RNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


@pytest.mark.parametrize("cls", [LSTM, RNN])
def test_a_class_named_like_a_torch_layer_is_checked_through_its_children(cls: type) -> None:
    model = cls()
    x = torch.randint(0, 20, (3, 5)) if cls is LSTM else torch.randn(5, 3, 8)
    handle = silent(sv.watch, model)  # no "cannot check" warning
    with handle:
        assert handle.unchecked == [] and len(handle.watched) == 1
        silent(model, x)
        inner = model.lstm if cls is LSTM else model.rnn
        inner.input_size = 300  # now the layer's input_size is wrong: shapeviz says so, not torch's matmul
        with pytest.raises(sv.ShapeError, match=r"\[input_size\]"):
            model(x)


def test_torch_own_lookalikes_stay_unchecked() -> None:
    q = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.LSTM(4, 6)), {nn.LSTM}, dtype=torch.qint8)
    with pytest.warns(UserWarning, match="cannot check 0"), sv.watch(q) as handle:
        assert handle.unchecked == ["0"]


# ------------------------------------------------------------------ 2. product batches
class SkipGRU(nn.Module):
    """LSTNet-style: a main GRU over (T, bs, c) and a skip GRU over (pt, bs*skip, c)."""

    def __init__(self, c: int = 5, h: int = 6, hs: int = 4, skip: int = 3) -> None:
        super().__init__()
        self.gru = nn.GRU(c, h)
        self.gru_skip = nn.GRU(c, hs)
        self.skip, self.hs = skip, hs

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (bs, T, c)
        bs, T, c = x.shape
        _, r = self.gru(x.permute(1, 0, 2).contiguous())
        pt = T // self.skip
        s = x[:, T - pt * self.skip:, :].permute(0, 2, 1).contiguous()  # (bs, c, pt*skip)
        s = s.view(bs, c, pt, self.skip).permute(2, 0, 3, 1).contiguous().view(pt, bs * self.skip, c)
        _, s = self.gru_skip(s)  # (1, bs*skip, hs)
        return torch.cat([r.squeeze(0), s.view(bs, self.skip * self.hs)], 1)


class Dilated(nn.Module):
    """Dilated RNN layers: layer i sees (T/rate, rate*bs, ...) with its own h_0 (1, rate*bs, h)."""

    def __init__(self, emb: int = 4, h: int = 5, rates: tuple[int, ...] = (1, 2, 4), state: bool = True) -> None:
        super().__init__()
        self.cells = nn.ModuleList(nn.GRU(emb if i == 0 else h, h) for i in range(len(rates)))
        self.rates, self.h, self.state = rates, h, state

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (T, bs, emb), T a multiple of every rate
        for rnn, rate in zip(self.cells, self.rates):
            T, bs, _ = x.shape
            d = torch.cat([x[j::rate] for j in range(rate)], 1)  # (T/rate, rate*bs, f)
            h0 = torch.zeros(1, rate * bs, self.h) if self.state else None
            y, _ = rnn(d, h0)
            x = torch.stack(y.split(bs, 1), 1).reshape(T, bs, self.h)  # back to (T, bs, h)
        return x


class Beam(nn.Module):
    """A beam search decoder: encoder over (T, bs, emb), decoder steps over a batch of bs*k."""

    def __init__(self, vocab: int = 11, emb: int = 4, h: int = 6) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        self.enc = nn.GRU(emb, h)
        self.dec = nn.GRU(emb, h)
        self.cell = nn.GRUCell(emb, h)
        self.out = nn.Linear(h, vocab)

    def forward(self, src: torch.Tensor, k: int = 3, steps: int = 4) -> torch.Tensor:  # src: (T, bs)
        _, h = self.enc(self.embed(src))  # (1, bs, h)
        bs = src.shape[1]
        h = h.repeat_interleave(k, 1)  # (1, bs*k, h)
        tok = torch.zeros(bs * k, dtype=torch.long)
        scores = torch.zeros(bs, k)
        for _ in range(steps):
            y, h = self.dec(self.embed(tok).unsqueeze(0), h)  # (1, bs*k, emb)
            hc = self.cell(self.embed(tok), h[0])  # a cell step over the beam too
            logp = self.out(y[0] + hc).log_softmax(-1).view(bs, k, -1) + scores.unsqueeze(-1)
            scores, idx = logp.view(bs, -1).topk(k, -1)
            beam = idx // logp.shape[-1] + torch.arange(bs).unsqueeze(1) * k
            h = h.index_select(1, beam.view(-1))
            tok = (idx % logp.shape[-1]).view(-1)
        return scores


def _sweep_skip(decl: str) -> int:
    n = 0
    for bs, T in itertools.product(range(1, 6), range(3, 16)):
        model = SkipGRU().eval()
        x = torch.randn(bs, T, 5)
        if decl == "inputs":
            with sv.watch(model, inputs="bs T"):
                silent(model, x)
        else:
            with sv.watch(model), sv.dims(bs=bs):
                silent(model, x)
        n += 1
    return n


@pytest.mark.parametrize("decl", ["inputs", "dims"])
def test_skip_gru_product_batch_is_silent_at_every_size(decl: str) -> None:
    assert _sweep_skip(decl) == 65  # includes bs == pt and bs*skip == T (e.g. bs=2, T=6)


@pytest.mark.parametrize("state", [True, False])
def test_dilated_layers_are_silent_at_every_size(state: bool) -> None:
    model = Dilated(state=state).eval()
    hits = 0
    for bs, T in itertools.product(range(1, 9), range(4, 33, 4)):
        hits += any(T // r == bs for r in (2, 4))  # the coincidences that alarmed before
        with sv.watch(model, inputs="T bs"):
            silent(model, torch.randn(T, bs, 4))
        with sv.watch(model), sv.dims(bs=bs, T=T):
            silent(model, torch.randn(T, bs, 4))
    assert hits > 10


def test_beam_search_product_batch_is_silent() -> None:
    model = Beam().eval()
    for bs, T, k in itertools.product(range(1, 5), range(1, 7), range(1, 5)):
        with torch.no_grad(), sv.watch(model, inputs="T bs"):
            silent(model, torch.randint(0, 11, (T, bs)), k=k)


# the mistakes these layers could hide are still caught
def test_a_real_swap_is_still_caught() -> None:
    emb, rnn = nn.Embedding(20, 8), nn.GRU(8, 6)
    model = nn.Sequential(emb)

    def run(tokens: torch.Tensor, h0: torch.Tensor | None = None) -> None:
        rnn(model(tokens), h0)  # (bs, T, emb) into a seq-first layer: forgot the transpose

    with sv.watch(rnn), sv.dims(bs=4, T=7), pytest.raises(sv.ShapeError, match=r"\[batch_first_swap\]"):
        run(torch.randint(0, 20, (4, 7)))
    with sv.watch(rnn), sv.dims(bs=4), pytest.raises(sv.ShapeError, match=r"\[batch_first_swap\]"):
        run(torch.randint(0, 20, (4, 7)))  # 7 is no multiple of 4: no merge of bs makes it
    with sv.watch(rnn), sv.dims(bs=4), pytest.raises(sv.ShapeError, match=r"\[batch_first_swap\]"):
        run(torch.randint(0, 20, (4, 8)), torch.zeros(1, 4, 6))  # h_0 agrees with the declared batch
    with sv.watch(rnn), sv.dims(bs=4), pytest.raises(sv.ShapeError, match=r"\[batch_first_swap\]"):
        run(torch.randint(0, 20, (4, 8)), torch.zeros(1, 4, 6))


def test_skip_gru_without_its_permute_is_still_caught() -> None:
    class Wrong(SkipGRU):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            _, r = self.gru(x)  # forgot x.permute(1, 0, 2): (bs, T, c) into a seq-first GRU
            return r

    with sv.watch(Wrong(), inputs="bs T") as handle, pytest.raises(sv.ShapeError, match=r"\[batch_first_swap\]"):
        handle.model(torch.randn(4, 7, 5))


def test_cell_step_needs_its_state_to_agree() -> None:
    cell = nn.GRUCell(4, 6)
    with sv.watch(cell), sv.dims(bs=2, T=6):
        silent(cell, torch.randn(6, 4))  # 6 rows: a beam of bs*k=2*3, say; nothing else says otherwise
        silent(cell, torch.randn(6, 4), torch.zeros(6, 6))  # its own state has batch 6
        with pytest.raises(sv.ShapeError, match=r"\[batch_first_swap\]"):
            cell(torch.randn(6, 4), torch.zeros(2, 6))  # the state has the declared bs: a (T, emb) step


# ------------------------------------------------------------------ 3. declarations made for a model
def test_checking_inputs_does_not_name_a_bare_layer() -> None:
    gru = nn.GRU(10, 20, 2)
    with sv.checking(inputs="bs T"):
        silent(gru, torch.randn(5, 3, 10), torch.zeros(2, 3, 20))
        silent(gru, torch.randn(5, 3, 10))
        with pytest.raises(sv.ShapeError, match=r"\[hidden_layers\]"):
            gru(torch.randn(5, 3, 10), torch.zeros(1, 3, 20))
    with sv.checking(), pytest.raises(sv.ShapeError, match=r"\[hidden_layers\]"):
        gru(torch.randn(5, 3, 10), torch.zeros(1, 3, 20))


def test_checking_inputs_still_names_a_model() -> None:
    model = nn.Sequential(nn.Embedding(20, 8), nn.GRU(8, 6))
    with sv.checking(inputs="bs T"), pytest.raises(sv.ShapeError, match=r"\[batch_first_swap\]"):
        model(torch.randint(0, 20, (4, 7)))


# ------------------------------------------------------------------ 4. contexts, not threads
def test_a_declaration_stays_in_its_task() -> None:
    model = nn.Sequential(nn.Embedding(20, 8), nn.GRU(8, 6))
    order: list[str] = []

    async def a() -> None:
        with sv.checking(inputs="bs T"):
            order.append("a in")
            await asyncio.sleep(0.01)  # task b runs meanwhile
            order.append("a out")

    async def b() -> None:
        await asyncio.sleep(0)
        order.append("b")
        with sv.checking():
            silent(model, torch.randint(0, 20, (7, 4)))  # (T, bs) for a seq-first model: correct

    async def main() -> None:
        await asyncio.gather(a(), b())

    asyncio.run(main())
    assert order == ["a in", "b", "a out"]


def test_dims_in_a_generator_finished_in_another_thread_do_not_stay() -> None:
    from shapeviz.core.dimensions import declared

    def gen():
        with sv.dims(bs=3, T=7):
            yield

    g = gen()
    next(g)
    assert declared() == {"bs": 3, "T": 7}  # Python's context: the generator runs in ours
    t = threading.Thread(target=lambda: next(g, None))
    t.start()
    t.join()
    assert declared() is None
    rnn = nn.GRU(4, 5)
    with sv.checking():
        silent(rnn, torch.randn(3, 7, 4))  # (T=3, bs=7): nothing declared any more


# ------------------------------------------------------------------ 5. autocast
@pytest.mark.parametrize("dt", [torch.bfloat16, torch.float16])
def test_autocast_accepts_what_torch_runs(dt: torch.dtype) -> None:
    lin, cell, gru = nn.Linear(4, 4), nn.GRUCell(4, 6), nn.GRU(4, 6)
    model = nn.ModuleList([lin, cell, gru])
    with sv.watch(model), torch.autocast("cpu", dtype=dt):
        x = lin(torch.randn(2, 4))
        assert x.dtype == dt
        silent(cell, x)  # a low-precision activation into float32 weights
        silent(cell, x, torch.zeros(2, 6))
        silent(gru, x.unsqueeze(0), torch.zeros(1, 2, 6))  # float32 h_0 with a low-precision input
        with pytest.raises(sv.ShapeError, match=r"\[dtype\]"):
            gru(torch.randn(3, 2, 4, dtype=torch.float64))  # autocast does not cast float64: torch fails too
    with sv.watch(model), pytest.raises(sv.ShapeError, match=r"\[dtype\]"):
        cell(torch.randn(2, 4, dtype=dt))  # outside autocast a dtype mismatch is a mistake


def test_autocast_is_per_device() -> None:
    from shapeviz.core.dtypes import castable

    bf16, f32 = torch.bfloat16, torch.float32
    with torch.autocast("cpu", dtype=bf16):
        assert castable(bf16, f32, torch.device("cpu"))
        assert not castable(bf16, f32, torch.device("cuda"))  # CPU autocast says nothing of CUDA calls
        assert not castable(bf16, f32, torch.device("meta"))


# ------------------------------------------------------------------ 6. modules the check never saw
class Generates(nn.Module):
    """A GRU whose ``generate`` steps a GRUCell made at call time from the GRU's weights."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]

    def generate(me, x: torch.Tensor, steps: int = 3) -> torch.Tensor:  # any name for self
        cell = nn.GRUCell(4, 6)
        cell.weight_ih, cell.weight_hh = me.gru.weight_ih_l0, me.gru.weight_hh_l0
        cell.bias_ih, cell.bias_hh = me.gru.bias_ih_l0, me.gru.bias_hh_l0
        h = None
        for _ in range(steps):
            h = cell(x, h)
        return h


class WeightDrop(nn.Module):
    """AWD-LSTM style: the wrapped LSTM's forward called directly (module hooks bypassed)."""

    def __init__(self, module: nn.LSTM) -> None:
        super().__init__()
        self.module = module
        w = module.weight_hh_l0
        del module._parameters["weight_hh_l0"]
        self.weight_hh_l0_raw = nn.Parameter(w.data)

    def forward(self, *args: torch.Tensor) -> tuple:
        self.module.weight_hh_l0 = nn.functional.dropout(self.weight_hh_l0_raw, 0.5, self.training)
        return self.module.forward(*args)


def test_a_cell_made_at_call_time_is_checked() -> None:
    m = Generates()
    with sv.watch(m):
        assert silent(m.generate, torch.randn(2, 4)).shape == (2, 6)
        with pytest.raises(sv.ShapeError, match=r"\[input_size\] <model>\.generate\(\): GRUCell"):
            m.generate(torch.randn(2, 5))
    with pytest.raises(RuntimeError) as caught:  # not watched: torch's own error
        m.generate(torch.randn(2, 5))
    assert not isinstance(caught.value, sv.ShapeError)


def test_a_cell_made_at_call_time_outside_a_watched_model_is_not_checked() -> None:
    other, watched = Generates(), Generates()
    with sv.watch(watched), pytest.raises(RuntimeError) as caught:
        other.generate(torch.randn(2, 5))
    assert not isinstance(caught.value, sv.ShapeError)


def test_a_forward_called_directly_is_checked() -> None:
    model = nn.Sequential(WeightDrop(nn.LSTM(4, 6)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: non-contiguous weights
        with sv.watch(model):
            model(torch.randn(5, 2, 4))
            with pytest.raises(sv.ShapeError, match=r"\[input_size\]"):
                model(torch.randn(5, 2, 3))


# ------------------------------------------------------------------ ops=True: provenance decides
def test_with_ops_provenance_catches_a_swap_sizes_cannot_prove() -> None:
    class Forgot(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(5, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x)[0]  # (bs, T, emb) into a seq-first GRU

    model, x = Forgot(), torch.randn(2, 6, 5)  # T=6 is a multiple of bs=2: the batch could be bs*3
    with sv.watch(model, inputs="bs T emb"):
        silent(model, x)  # sizes alone: no evidence, no alarm
    with sv.watch(model, inputs="bs T emb", ops=True), pytest.raises(
            sv.ShapeError, match=r"\[batch_first_swap\][\s\S]*comes from the model input's bs"):
        model(x)


class Tokens2GRU(nn.Module):
    """(bs, T) token ids into a seq-first GRU: ``transpose=False`` forgets the transpose."""

    def __init__(self, transpose: bool) -> None:
        super().__init__()
        self.transpose = transpose
        self.emb, self.rnn = nn.Embedding(20, 8), nn.GRU(8, 6)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        e = self.emb(tokens)
        return self.rnn(e.transpose(0, 1) if self.transpose else e)[0]


@pytest.mark.parametrize(("bs", "T"), [(4, 4), (3, 7)])
def test_with_ops_provenance_catches_a_swap_whatever_the_sizes(bs: int, T: int) -> None:
    """Sizes that fit (bs == T), or no declared sizes at all (a tensor named with ``sv.name``): the size check
    lets the call pass, and provenance still says the time axis is bs. The transposed twin stays silent."""
    tokens = torch.randint(0, 20, (bs, T))
    forgot, right = Tokens2GRU(False), Tokens2GRU(True)
    for block, arg in ((lambda m: sv.watch(m, inputs="bs T", ops=True), tokens),
                       (lambda m: sv.checking(ops=True), sv.name(tokens, "bs T"))):
        with block(forgot), pytest.raises(sv.ShapeError) as err:
            forgot(arg)
        assert err.value.code == "batch_first_swap" and "rnn: GRU(8, 6)" in str(err.value), err.value
        assert "comes from the model input's bs" in str(err.value)
        with block(right):
            silent(right, arg)
    if bs == T:
        with sv.watch(forgot, inputs="bs T"):
            silent(forgot, tokens)  # without ops, equal sizes prove nothing


class TwoSequences(nn.Module):
    """Two inputs named by the user, ``x`` (bs, T, emb) and ``y`` (bs, S, emb), into two seq-first GRUs;
    ``forgot`` leaves ``y`` untransposed."""

    def __init__(self, forgot: bool) -> None:
        super().__init__()
        self.forgot = forgot
        self.a, self.b = nn.GRU(8, 6), nn.GRU(8, 6)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = sv.name(x, "bs T emb"), sv.name(y, "bs S emb")
        return self.a(x.transpose(0, 1))[0], self.b(y if self.forgot else y.transpose(0, 1))[0]


def test_with_ops_a_time_dim_the_user_named_otherwise_is_time_too() -> None:
    """``S`` is not called T, but the layer reads the model input's bs as its time axis and S as its batch:
    provenance catches it whatever the sizes (here bs == S), and the transposed twin stays silent."""
    x, y = torch.randn(4, 5, 8), torch.randn(4, 4, 8)
    forgot, right = TwoSequences(forgot=True), TwoSequences(forgot=False)
    with sv.watch(forgot, ops=True), pytest.raises(sv.ShapeError) as err:
        forgot(x, y)
    assert err.value.code == "batch_first_swap" and "b: GRU(8, 6)" in str(err.value), err.value
    with sv.watch(right, ops=True):
        silent(right, x, y)


@pytest.mark.parametrize("make", [SkipGRU, Dilated])
def test_with_ops_product_batches_stay_silent(make: type) -> None:
    model = make().eval()
    for bs, T in itertools.product(range(1, 5), (3, 6, 9, 12) if make is SkipGRU else (4, 8, 12, 16)):
        if make is SkipGRU:
            x, spec = torch.randn(bs, T, 5), "bs T emb"
        else:
            x, spec = torch.randn(T, bs, 4), "T bs emb"
        with sv.watch(model, inputs=spec, ops=True):
            silent(model, x)


# ------------------------------------------------------------------ sizes of 1, and declarations that confirm
class OneStepDecoder(nn.Module):
    """Encode ``(bs, T)`` tokens batch-first, then one decoder step: unbatched ``(1, emb)`` when bs=1 and no
    state is passed (torch reads it as T=1, which computes what a step of one sequence does), else a beam of
    ``bs*k`` rows, one step each, from the encoder's state (``state`` says how it is made for the beam)."""

    def __init__(self, k: int = 4, state: str = "repeat") -> None:
        super().__init__()
        self.k, self.state = k, state
        self.emb = nn.Embedding(20, 8)
        self.enc = nn.GRU(8, 8, batch_first=True)
        self.dec = nn.GRU(8, 8, batch_first=True)
        self.step = nn.GRU(16, 8)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        out, h = self.enc(self.emb(src))  # (bs, T, 8), (1, bs, 8)
        if src.shape[0] == 1 and self.state == "none":
            y, _ = self.step(torch.cat((self.emb(src[:, -1]), out.mean(1)), -1))  # (1, 16): unbatched
            return y
        tok = self.emb(torch.ones(src.shape[0] * self.k, 1, dtype=torch.long))  # (bs*k, 1, 8)
        h = h.repeat_interleave(self.k, dim=1) if self.state == "repeat" else h  # "stale": not made for the beam
        return self.dec(tok, h)[0]


@pytest.mark.parametrize(("bs", "T"), [(1, 4), (1, 5), (2, 4), (2, 8), (3, 12)])
def test_one_step_calls_and_batches_of_one_are_not_evidence(bs: int, T: int) -> None:
    src = torch.randint(0, 20, (bs, T))
    for state in ("repeat", "none") if bs == 1 else ("repeat",):
        m = OneStepDecoder(state=state)
        want = m(src)
        with sv.watch(m, inputs="bs T"):
            assert torch.equal(silent(m, src), want)
    m = OneStepDecoder(state="stale")  # the beam's state left at the batch: torch rejects it
    with sv.watch(m, inputs="bs T"), pytest.raises(sv.ShapeError) as err:
        m(src)
    assert err.value.code == "batch_mismatch" and err.value.argument == "h_0", err.value
    assert "transpose" not in str(err.value)  # the wrong fix: it would run the k beams as k steps
    assert f"bs={bs * 4}" not in str(err.value)  # the layer's batch is bs*k, not the declared bs


@pytest.mark.parametrize("batch_first", [True, False])
def test_a_stale_state_whose_batch_equals_T_is_a_batch_mismatch_where_declarations_confirm_the_input(
        batch_first: bool) -> None:
    """The last, smaller batch of an epoch (bs=2) with the state of the full batch (7), where T is 7 too: the
    declared sizes read the input as the layer does, so the state's batch is no evidence of a swap."""
    gru = nn.GRU(8, 16, batch_first=batch_first)
    x = torch.randn(2, 7, 8) if batch_first else torch.randn(7, 2, 8)
    with sv.dims(bs=2, T=7), pytest.raises(sv.ShapeError) as err:
        sv.check_call(gru, x, torch.zeros(1, 7, 16))
    assert err.value.code == "batch_mismatch", err.value
    assert "h0[:, :2]" in str(err.value)
    with pytest.raises(sv.ShapeError) as err:  # nothing declared: the state's batch is the evidence
        sv.check_call(gru, x.transpose(0, 1), torch.zeros(1, 2, 16))
    assert err.value.code == "batch_first_swap" and "evidence: h_0 has batch 2" in str(err.value)
    with sv.dims(bs=7, T=2), pytest.raises(sv.ShapeError) as err:  # declarations that agree with the state
        sv.check_call(gru, x, torch.zeros(1, 7, 16))
    assert err.value.code == "batch_first_swap"


class StaleDilated(Dilated):
    """One dilated layer (rate 2) given the state of the undilated batch, ``(1, bs, h)``: torch rejects it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (T, bs, emb)
        d = torch.cat([x[j::2] for j in range(2)], 1)  # (T/2, 2*bs, emb)
        return self.cells[0](d, torch.zeros(1, x.shape[1], self.h))[0]


def test_with_ops_provenance_outweighs_a_state_whose_batch_matches_by_size() -> None:
    """T/2 == bs: by sizes the state's batch is the input's time axis (a swap); provenance says dim 1 is 2 blocks
    of bs and dim 0 part of T, so it is what torch says, a batch mismatch (the transpose hint would be wrong)."""
    model, x = StaleDilated(rates=(2,)), torch.randn(12, 6, 4)  # T=12, bs=6
    with sv.watch(model, inputs="T bs emb", ops=True), pytest.raises(sv.ShapeError) as err:
        model(x)
    assert err.value.code == "batch_mismatch" and err.value.argument == "h_0", err.value


class TwoTasks(nn.Module):
    """One batch-first LSTM over two batches of token ids, ``a`` (named) and ``b``; ``wrong`` transposes b's."""

    def __init__(self, wrong: bool = False) -> None:
        super().__init__()
        self.wrong = wrong
        self.emb, self.lstm = nn.Embedding(40, 6), nn.LSTM(6, 6, batch_first=True)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.emb(b)
        return self.lstm(self.emb(a))[0], self.lstm(e.transpose(0, 1) if self.wrong else e)[0]


def test_a_second_input_laid_out_the_other_way_is_no_evidence() -> None:
    """``inputs="bs T"`` names ``a`` (bs=6, T=4); ``b`` is another batch, (4, 6): the layer's (bs=4, T=6) call
    lines up swapped with the declared sizes, but b itself is laid out that way, so sizes prove nothing."""
    a, b = torch.randint(0, 40, (6, 4)), torch.randint(0, 40, (4, 6))
    model = TwoTasks()
    for block in (lambda: sv.watch(model, inputs="bs T"), lambda: sv.checking(inputs="bs T")):
        with block():
            silent(model, a, b)
    wrong = TwoTasks(wrong=True)  # b of a's shape, transposed before the layer: the evidence holds
    with sv.watch(wrong, inputs="bs T"), pytest.raises(sv.ShapeError) as err:
        wrong(a, torch.randint(0, 40, (6, 4)))
    assert err.value.code == "batch_first_swap", err.value


class TwoTasksStaleState(nn.Module):
    """Two seq-first LSTMs over two batches, ``a`` (T=4, bs=6) and ``b`` (T=6, bs=4); ``b``'s state is built
    from ``a``'s batch (the mistake), so h_0's batch 6 equals b's dim 0 by size only."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.LSTM(8, 16), nn.LSTM(8, 16)

    def forward(self, xa: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = (torch.zeros(1, xa.size(1), 16), torch.zeros(1, xa.size(1), 16))
        return self.a(xa, state)[0], self.b(xb, state)[0]


def test_a_stale_state_from_the_other_task_is_a_batch_mismatch_not_a_swap() -> None:
    """The model is given (4, 6) and (6, 4): b's h_0 with batch 6 = b's dim 0 cannot tell a transposed input
    from a state built for the other input. torch says the state's batch is wrong, and so does shapeviz (the
    transpose hint would break b)."""
    model, xa, xb = TwoTasksStaleState(), torch.randn(4, 6, 8), torch.randn(6, 4, 8)
    for kw in ({}, {"ops": True}, {"ops": True, "inputs": "T bs"}):
        with sv.watch(model, **kw), pytest.raises(sv.ShapeError) as err:
            model(xa, xb)
        assert err.value.code == "batch_mismatch" and err.value.argument == "h_0", (kw, err.value)
    with pytest.raises(RuntimeError, match="Expected hidden"):  # torch agrees: the state is the culprit
        model(xa, xb)
    swapped = nn.LSTM(8, 16)  # one input (bs=6, T=4) and its own state: the state's batch is evidence
    with sv.watch(swapped), pytest.raises(sv.ShapeError) as err:
        swapped(torch.randn(6, 4, 8), (torch.zeros(1, 6, 16), torch.zeros(1, 6, 16)))
    assert err.value.code == "batch_first_swap", err.value
    # a size match of the state alone: the other reading (a state kept from a batch of 6) gets its fix too
    assert err.value.hints[-1].startswith("or, if x is right and h_0 was kept from an earlier batch of 6: "
                                          "h0 = torch.zeros(1, 4, 16)"), err.value.hints


class Hierarchical(nn.Module):
    """Documents (bs, S, W) of token ids: a word GRU over the bs*S sentences, attention pooling by a broadcast
    product, then a sentence GRU over (bs, S, h). ``wrong`` splits the merged batch the other way round."""

    def __init__(self, wrong: bool = False) -> None:
        super().__init__()
        self.wrong = wrong
        self.emb = nn.Embedding(30, 6)
        self.words, self.sents = nn.GRU(6, 8, batch_first=True), nn.GRU(8, 5, batch_first=True)
        self.score = nn.Linear(8, 1)

    def forward(self, docs: torch.Tensor) -> torch.Tensor:
        bs, S, W = docs.shape
        w, _ = self.words(self.emb(docs.reshape(bs * S, W)))  # (bs*S, W, 8)
        a = torch.softmax(self.score(w), dim=1)  # (bs*S, W, 1)
        v = (a * w).sum(1)  # (bs*S, 8): the weights first, broadcast over the features
        v = v.view(S, bs, -1).transpose(0, 1) if self.wrong else v.view(bs, S, -1)
        return self.sents(v)[0]


@pytest.mark.parametrize(("bs", "S", "W"), [(3, 5, 7), (2, 4, 8), (4, 4, 4)])
def test_a_merged_batch_no_name_says_is_bs_is_split_silently(bs: int, S: int, W: int) -> None:
    """Under ``checking(ops=True)`` with nothing named, the word GRU's batch (bs*S) is not the model's bs (its
    reading of its own layout is no evidence): splitting it back is no scrambled view."""
    docs = torch.randint(0, 30, (bs, S, W))
    model = Hierarchical()
    for block in (lambda: sv.checking(ops=True), lambda: sv.watch(model, inputs="bs S W", ops=True)):
        with block():
            silent(model, docs)
    if bs != S:
        wrong = Hierarchical(wrong=True)
        with sv.watch(wrong, inputs="bs S W", ops=True), pytest.raises(sv.ShapeError) as err:
            wrong(docs)
        assert err.value.code == "scrambled_view", err.value


class CellLoop(nn.Module):
    """A GRUCell stepped over ``(T, bs, emb)``; ``transpose=False`` forgets the transpose of ``(bs, T)`` tokens
    and sizes the state from the wrong dim, so torch runs it: each "step" is a row of the batch."""

    def __init__(self, transpose: bool) -> None:
        super().__init__()
        self.transpose = transpose
        self.emb, self.cell = nn.Embedding(20, 6), nn.GRUCell(6, 6)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.emb(tokens)
        x = x.transpose(0, 1) if self.transpose else x
        T, bs, _ = x.shape
        h = x.new_zeros(bs, 6)
        for t in range(T):
            h = self.cell(x[t], h)
        return h


class Autoencoder(nn.Module):
    """Encode (bs, T, f), repeat the last state T times, decode batch-first; ``wrong`` forgets the transpose of
    the repeated (T, bs, h)."""

    def __init__(self, wrong: bool) -> None:
        super().__init__()
        self.wrong = wrong
        self.enc, self.dec = nn.LSTM(6, 6, batch_first=True), nn.LSTM(6, 6, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.enc(x)
        z = h[-1].unsqueeze(0).repeat(x.shape[1], 1, 1)  # (T, bs, h)
        return self.dec(z if self.wrong else z.transpose(0, 1))[0]


@pytest.mark.parametrize(("bs", "T"), [(4, 9), (5, 5)])
def test_with_ops_provenance_catches_a_cell_loop_over_the_batch_and_a_repeated_state(bs: int, T: int) -> None:
    """A cell loop over the batch dim, and T copies of a state read as the batch: caught by provenance whatever
    the sizes (the state sized from the wrong dim, or copies counted as the batch, outweigh nothing). Their
    right twins stay silent."""
    tokens, x = torch.randint(0, 20, (bs, T)), torch.randn(bs, T, 6)
    for wrong, right, arg in ((CellLoop(False), CellLoop(True), tokens), (Autoencoder(True), Autoencoder(False), x)):
        with sv.watch(wrong, inputs="bs T", ops=True), pytest.raises(sv.ShapeError) as err:
            wrong(arg)
        assert err.value.code == "batch_first_swap", err.value
        with sv.watch(right, inputs="bs T", ops=True):
            silent(right, arg)


def test_with_ops_provenance_judges_a_declared_layer_as_it_judges_torchs() -> None:
    """A from-scratch RNN declared ``input="T bs emb"``, fed (bs, T, emb) one-hot ids untransposed, bs == T."""
    class ScratchRNN(nn.Module):
        def __init__(self, num_inputs: int, num_hiddens: int) -> None:
            super().__init__()
            self.num_inputs, self.num_hiddens = num_inputs, num_hiddens
            self.W = nn.Linear(num_inputs + num_hiddens, num_hiddens)

        def forward(self, inputs: torch.Tensor, state: tuple | None = None) -> tuple:
            (h,) = state if state is not None else (inputs.new_zeros(inputs.shape[1], self.num_hiddens),)
            outputs = []
            for x_t in inputs:  # (T, bs, emb): each step (bs, emb)
                h = torch.tanh(self.W(torch.cat((x_t, h), 1)))
                outputs.append(h)
            return torch.stack(outputs), (h,)

    sv.recurrent(ScratchRNN, input="T bs emb", state=("bs h",), sizes={"emb": "num_inputs", "h": "num_hiddens"})
    try:
        class Net(nn.Module):
            def __init__(self, transpose: bool) -> None:
                super().__init__()
                self.transpose, self.rnn = transpose, ScratchRNN(8, 6)

            def forward(self, X: torch.Tensor) -> torch.Tensor:
                return self.rnn(torch.nn.functional.one_hot(X.T if self.transpose else X, 8).float())[0]

        X = torch.randint(0, 8, (5, 5))
        with sv.watch(wrong := Net(False), inputs="bs T", ops=True), pytest.raises(sv.ShapeError) as err:
            wrong(X)
        assert err.value.code == "batch_first_swap" and "rnn: ScratchRNN" in str(err.value), err.value
        with sv.watch(right := Net(True), inputs="bs T", ops=True):
            silent(right, X)
    finally:
        from shapeviz.core.declared import undeclare

        undeclare(ScratchRNN)


@pytest.mark.parametrize("bs", [8, 4, 1])
def test_with_ops_a_batch_read_as_an_unbatched_sequence_is_caught_by_provenance(bs: int) -> None:
    """A policy's (bs, obs) observations given to an LSTM without a time dim: torch reads the batch as time. With
    ops=True, provenance says dim 0 is bs (obs == bs == 4 too); a batch of one computes the same either way."""
    lstm = nn.LSTM(4, 4)
    obs = sv.name(torch.randn(bs, 4), "bs obs")
    with sv.checking(ops=True):
        if bs == 1:
            silent(lstm, obs)
        else:
            with pytest.raises(sv.ShapeError) as err:
                lstm(obs)
            assert err.value.code == "unbatched_ambiguous" and "comes from the model input's bs" in str(err.value)
        silent(lstm, obs.unsqueeze(0))  # one step of bs sequences: right


class PerExampleGRU(nn.Module):
    """Each example's own tokens, cut to its length, run unbatched: ``(len_i, emb)`` with len_i up to T."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.gru = nn.Embedding(20, 8), nn.GRU(8, 16)

    def forward(self, x: torch.Tensor, lens: list[int]) -> torch.Tensor:
        return torch.stack([self.gru(self.emb(x[i, :n]))[1][-1] for i, n in enumerate(lens)])


class StepsThroughALayer(nn.Module):
    """The mistake the per-example loop resembles: ``x[:, t]`` (bs, emb) given to a layer, read as (T=bs, emb)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(8, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.rnn(x[:, t])[1] for t in range(x.shape[1])])


class JoinedPerExample(nn.Module):
    """Each example's context and question joined into one unbatched sequence: ``(T + Tq, emb)``."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.gru = nn.Embedding(20, 8), nn.GRU(8, 16)

    def forward(self, ctx: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.gru(self.emb(torch.cat((ctx[i], q[i]))))[1][-1] for i in range(len(ctx))])


@pytest.mark.parametrize("ops", [False, True])
def test_a_per_example_unbatched_loop_whose_length_equals_bs_is_silent(ops: bool) -> None:
    """An unbatched sequence may have any length: a slice ``x[i, :len_i]`` (len 4 == bs 4 here) or a joined
    ``cat((ctx[i], q[i]))`` (T + Tq == bs == 5, longer than T). Its size matching bs is no evidence; the step
    mistake it resembles is caught where provenance (ops=True) says its dim 0 is the model input's bs."""
    model = PerExampleGRU()
    with sv.watch(model, inputs="bs T", ops=ops):
        out = silent(model, torch.randint(0, 20, (4, 10)), [10, 4, 7, 3])
    assert out.shape == (4, 16)
    joined = JoinedPerExample()
    with sv.watch(joined, inputs="bs T", ops=ops):
        silent(joined, torch.randint(0, 20, (5, 2)), torch.randint(0, 20, (5, 3)))
    steps = StepsThroughALayer()
    for bs, T in [(4, 10), (4, 2)]:
        if ops:
            with sv.watch(steps, inputs="bs T emb", ops=ops), pytest.raises(sv.ShapeError) as err:
                steps(torch.randn(bs, T, 8))
            assert err.value.code == "unbatched_ambiguous", err.value
        else:  # without provenance, (4, emb) may be a sequence of 4 steps
            with sv.watch(steps, inputs="bs T emb", ops=ops):
                silent(steps, torch.randn(bs, T, 8))


class Dialogue(nn.Module):
    """One dialogue per call: a batch-first GRU over each utterance's words, then a seq-first GRU over the
    utterances as time with a batch of one dialogue, ``(n_utt, 1, h)``."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.utt, self.ctx = nn.Embedding(50, 16), nn.GRU(16, 32, batch_first=True), nn.GRU(32, 32)

    def forward(self, utts: torch.Tensor) -> torch.Tensor:
        return self.ctx(self.utt(self.emb(utts))[1].transpose(0, 1))[0]


@pytest.mark.parametrize("ops", [False, True])
@pytest.mark.parametrize("T", [1, 7])
def test_a_layer_batch_of_one_beside_a_declared_T_of_one_is_no_swap(ops: bool, T: int) -> None:
    """One-word utterances (declared T=1) and a context layer over a batch of one: ``(4, 1, h)`` reads as
    ``(bs=4, T=1)`` swapped by sizes alone, and a size of 1 proves nothing."""
    model = Dialogue()
    with sv.watch(model, inputs="bs T", ops=ops):
        assert silent(model, torch.randint(0, 50, (4, T))).shape == (4, 1, 32)


class ForecastForgotBatchFirst(nn.Module):
    """A forecaster's encoder without ``batch_first=True`` on ``(bs, T, feat)``: with bs=6 and T=12 it reads a
    batch of 12 (a multiple of bs: maybe a merged batch, so sizes prove nothing there); its state then reaches a
    decoder cell stepped over the real batch of 6."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.cell = nn.GRU(3, 16), nn.GRUCell(1, 16)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        h = self.enc(src)[1][-1]
        return self.cell(src[:, -1, :1], h)


def test_a_state_whose_batch_is_the_declared_T_names_the_layer_that_may_have_read_it_swapped() -> None:
    """The cell's state has batch 12 = the declared T: cutting it to 6 (a smaller last batch) is one reading,
    an upstream layer that read (bs, T) as (T, bs) the other; the message gives both, the slice not alone."""
    model = ForecastForgotBatchFirst()
    with sv.watch(model, inputs="bs T feat"), pytest.raises(sv.ShapeError) as err:
        model(torch.randn(6, 12, 3))
    assert err.value.code == "batch_mismatch", err.value
    assert err.value.hints[-1].startswith("or, as its batch 12 is the declared T: the layer that made this state "
                                          "may have read (bs, T, …) as (T, bs, …)"), err.value.hints


class ConvIntoLSTM(nn.Module):
    """A conv's ``(bs, C, W)`` fed to a seq-first LSTM as it is (``permute(2, 0, 1)`` forgotten)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.lstm = nn.Conv1d(2, 8, 3, padding=1), nn.LSTM(8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(self.conv(x))[0]


def test_with_ops_a_swap_where_only_bs_is_known_hints_the_permute_too() -> None:
    """bs == C == W == 8: the sizes fit and provenance says dim 0 is bs; whether the rest is (T, emb) or a conv's
    (C, W) nothing says, so the permute is hinted beside the transpose."""
    model = ConvIntoLSTM()
    with sv.watch(model, inputs="bs", ops=True), pytest.raises(sv.ShapeError) as err:
        model(torch.randn(8, 2, 8))
    assert err.value.code == "batch_first_swap", err.value
    assert "x = x.permute(2, 0, 1)  # if x is (bs, C, W)" in err.value.hints[1], err.value.hints


class SamplePaths(nn.Module):
    """DeepAR-style sampling: S paths per series, the last step repeated per path with ``repeat_interleave``;
    ``tiled`` repeats the state with ``repeat`` (copies outer) instead, so the rows no longer line up."""

    def __init__(self, tiled: bool) -> None:
        super().__init__()
        self.tiled = tiled
        self.rnn = nn.LSTM(3, 16, batch_first=True)

    def forward(self, x: torch.Tensor, paths: int = 2) -> torch.Tensor:
        _, (h, c) = self.rnn(x)
        if self.tiled:
            h, c = h.repeat(1, paths, 1), c.repeat(1, paths, 1)
        else:
            h, c = h.repeat_interleave(paths, dim=1), c.repeat_interleave(paths, dim=1)
        return self.rnn(x[:, -1:].repeat_interleave(paths, dim=0), (h, c))[0]


def test_with_ops_a_state_whose_rows_are_in_another_order_than_the_inputs_is_caught() -> None:
    x = torch.randn(4, 8, 3)
    with sv.watch(tiled := SamplePaths(tiled=True), inputs="bs T", ops=True), pytest.raises(sv.ShapeError) as err:
        tiled(x)
    assert err.value.code == "batch_mismatch" and err.value.argument == "h_0", err.value
    assert "its batch is 2*bs but the input's is bs*2" in str(err.value)
    assert err.value.hints[0].startswith("h = h.repeat_interleave(2, dim=1)"), err.value.hints
    with sv.watch(right := SamplePaths(tiled=False), inputs="bs T", ops=True):
        silent(right, x)


@pytest.mark.parametrize("how", ["movedim", "moveaxis", "einsum", "rot90-back"])
def test_with_ops_dims_moved_by_movedim_einsum_or_rot90_keep_their_names(how: str) -> None:
    """``x.movedim(1, 0)``, ``torch.einsum("btd->tbd", x)`` and the like turn ``(bs, T, emb)`` into ``(T, bs, emb)`` as
    a transpose does. With bs == T, the names must move with the dims: before, an op with no rule whose result kept
    the input's shape kept its names in place, and a correct seq-first GRU got a batch_first_swap."""

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.g = nn.GRU(4, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (bs, T, emb)
            if how == "movedim":
                y = x.movedim(1, 0)
            elif how == "moveaxis":
                y = torch.moveaxis(x, (0, 1), (1, 0))
            elif how == "einsum":
                y = torch.einsum("btd->tbd", x)
            else:  # rot90 twice is a flip of both dims, in place; once more: the dims swap
                y = torch.rot90(torch.rot90(x, 2, (0, 1)), 1, (0, 1)).flip(0)
            return self.g(y)[0]

    m = M()
    for bs, T in ((4, 4), (3, 5)):
        x = torch.randn(bs, T, 4)
        with sv.checking(inputs="bs T emb", ops=True):
            silent(m, x)
        t = sv.trace(m, x, ops=True, inputs_dims="bs T emb")
        gru = next(c for c in t.calls if c.type == "GRU")
        assert gru.inputs[0].names[:2] == ("T", "bs"), (how, gru.inputs[0].names)
    with sv.checking(ops=True), pytest.raises(sv.ShapeError, match="batch_first_swap"):  # named by sv.name: a bare
        m.g(sv.name(torch.randn(4, 4, 4), "bs T emb").movedim(1, 1))  # layer's input is never named by inputs=
        # no move at all: (bs, T, emb) to a seq-first layer


def test_with_ops_a_layers_own_pre_hook_that_transposes_its_input_is_no_swap() -> None:
    """A forward pre-hook of the layer's own turns its ``(bs, T, emb)`` argument into ``(T, bs, emb)``: the layer reads
    the hook's result. The ops=True flow sees the argument before that hook runs, so it judges nothing there; the
    check inside the layer's forward still judges what the layer gets."""

    class M(nn.Module):
        def __init__(self, transpose: bool) -> None:
            super().__init__()
            self.lstm = nn.LSTM(4, 5)  # seq-first
            if transpose:
                self.lstm.register_forward_pre_hook(lambda m, args: (args[0].transpose(0, 1), *args[1:]))
            else:
                self.lstm.register_forward_pre_hook(lambda m, args: None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (bs, T, emb)
            return self.lstm(x)[0]

    for bs, T in ((3, 6), (4, 4)):
        m = M(transpose=True)
        with sv.watch(m, inputs="bs T", ops=True):
            silent(m, torch.randn(bs, T, 4))
        with sv.checking(ops=True):
            silent(m, sv.name(torch.randn(bs, T, 4), "bs T emb"))
    m = M(transpose=False)  # a hook that changes nothing: the layer gets (bs, T, emb), and the declared sizes say so
    with sv.watch(m, inputs="bs T", ops=True), pytest.raises(sv.ShapeError, match="batch_first_swap"):
        m(torch.randn(3, 6, 4))


# ------------------------------------------------------------------ a batch of one: the outer batch as a sequence
class _WordsOfChars(nn.Module):
    """Each word's characters through a batch-first LSTM (the words are its batch); the words' vectors then
    read as one sentence by a seq-first LSTM, ``view(len(words), 1, -1)``: a batch of one."""

    def __init__(self) -> None:
        super().__init__()
        self.chars, self.words = nn.Embedding(30, 4), nn.Embedding(50, 6)
        self.char_lstm = nn.LSTM(4, 5, batch_first=True)
        self.word_lstm = nn.LSTM(11, 7)

    def forward(self, chars: torch.Tensor, words: torch.Tensor) -> torch.Tensor:  # (N, C), (N,)
        _, (h, _) = self.char_lstm(self.chars(chars))  # h: (1, N, 5)
        feats = torch.cat((self.words(words), h[-1]), 1)  # (N, 11)
        return self.word_lstm(feats.view(len(words), 1, -1))[0]  # (N, 1, 7)


class _OneDocument(nn.Module):
    """A document at a time: its sentences are the word GRU's batch, then the sentence GRU's steps."""

    def __init__(self, from_step: bool = False) -> None:
        super().__init__()
        self.from_step = from_step
        self.emb = nn.Embedding(20, 4)
        self.word_gru, self.sent_gru = nn.GRU(4, 6, batch_first=True), nn.GRU(6, 6)

    def forward(self, doc: torch.Tensor) -> torch.Tensor:  # (S, W) tokens
        out, h = self.word_gru(self.emb(doc))
        vec = out[:, -1] if self.from_step else h[-1]  # (S, h): one vector per sentence
        return self.sent_gru(vec.unsqueeze(1), torch.zeros(1, 1, 6))[0]  # (S, 1, h)


class _OneDocumentByCell(nn.Module):
    """The same, the words stepped by a GRUCell: the final states summarise each sentence (no single step)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.cell, self.sent_gru = nn.Embedding(20, 4), nn.GRUCell(4, 6), nn.GRU(6, 6)

    def forward(self, doc: torch.Tensor) -> torch.Tensor:  # (S, W) tokens
        e = self.emb(doc)
        h = e.new_zeros(doc.shape[0], 6)
        for t in range(doc.shape[1]):
            h = self.cell(e[:, t], h)
        return self.sent_gru(h.unsqueeze(1))[0]  # (S, 1, h)


class _StepAsSequence(nn.Module):
    """A mistake: the first step of bs sequences, (bs, 1, emb), given to a seq-first GRU reads bs as time."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.dec = nn.Embedding(30, 5), nn.GRU(5, 6)

    def forward(self, src: torch.Tensor) -> torch.Tensor:  # (bs, T)
        return self.dec(self.emb(src[:, 0]).unsqueeze(1))[0]


@pytest.mark.parametrize(("n", "c"), [(5, 7), (4, 4), (1, 3)])
def test_the_items_of_a_batch_read_as_one_sequence_are_silent(n: int, c: int) -> None:
    chars, words = torch.randint(0, 30, (n, c)), torch.randint(0, 50, (n,))
    for inputs, ops in itertools.product(("bs", "bs T", None), (True, False)):
        m = _WordsOfChars()
        with sv.watch(m, inputs=inputs, ops=ops):
            assert silent(m, chars, words).shape == (n, 1, 7)
    for from_step in (False, True):
        m = _OneDocument(from_step)
        with sv.watch(m, inputs="bs T", ops=True):
            assert silent(m, chars % 20).shape == (n, 1, 6)
        with sv.checking(ops=True):
            assert silent(m, sv.name(chars % 20, "bs T")).shape == (n, 1, 6)
    m = _OneDocumentByCell()
    with sv.watch(m, inputs="bs T", ops=True):
        assert silent(m, chars % 20).shape == (n, 1, 6)


@pytest.mark.parametrize(("bs", "T"), [(3, 5), (4, 4)])
def test_one_step_of_each_sequence_read_as_a_sequence_is_still_a_swap(bs: int, T: int) -> None:
    m = _StepAsSequence()
    with pytest.raises(sv.ShapeError, match="batch_first_swap"), sv.watch(m, inputs="bs T", ops=True):
        m(torch.randint(0, 30, (bs, T)))


def test_one_step_of_a_batch_of_one_is_the_same_either_way_and_silent() -> None:
    """(1, 1, emb): the first step of one sequence, read as a sequence or as a step, is the same."""
    m = _StepAsSequence()
    with sv.watch(m, inputs="bs T", ops=True):
        assert silent(m, torch.randint(0, 30, (1, 3))).shape == (1, 1, 6)


def test_an_empty_view_under_ops_runs_as_torch_runs_it() -> None:
    """A pyramid's remainder of no steps, ``o[:, :0].view(bs, 0, 2h)``: nothing moves, nothing to check."""
    with sv.checking(ops=True):
        x = sv.name(torch.zeros(3, 0, 6), "bs T h")
        assert silent(x.reshape, 3, 0, 12).shape == (3, 0, 12)
    t = sv.trace(lambda x: x.reshape(3, 0, 12), torch.zeros(3, 0, 6), ops=True, inputs_dims="bs T h")
    assert "reshape" in t.table()


class OneDocument(nn.Module):
    """One document a call: its sentences ``(N, W)`` are the word GRU's batch; the N sentence vectors (``h_n[-1]``
    or the outputs pooled over words) are then one unbatched sequence ``(N, h)`` for a sentence GRU."""

    def __init__(self, pooled: bool) -> None:
        super().__init__()
        self.pooled, self.emb = pooled, nn.Embedding(30, 8)
        self.word, self.sent = nn.GRU(8, 16, batch_first=True), nn.GRU(16, 16)

    def forward(self, doc: torch.Tensor) -> torch.Tensor:
        out, hw = self.word(self.emb(doc))
        sentences = out.max(1).values if self.pooled else hw[-1]  # (N, h)
        return self.sent(sentences)[1]  # unbatched: (T=N, emb=h)


@pytest.mark.parametrize("pooled", [False, True])
@pytest.mark.parametrize("n", [4, 6])
def test_a_layers_summaries_read_as_the_steps_one_level_up_are_silent(pooled: bool, n: int) -> None:
    """A document's sentence vectors, its dim 0 the model input's bs by provenance (``inputs="bs T"``), given
    unbatched to a sentence GRU: right (torch runs it as the sequence it is), and it raised unbatched_ambiguous.
    The step mistake it resembles (an embedded step ``x[:, t]``, features ``emb``) is still caught above."""
    model = OneDocument(pooled)
    doc = torch.randint(0, 30, (n, 6))
    with sv.watch(model, inputs="bs T", ops=True):
        h = silent(model, doc)
    assert h.shape == (1, 16)
    with sv.checking(inputs="bs T", ops=True):
        silent(model, doc)


class SeqFirstChild(nn.Module):
    """A seq-first part: ``z`` is (T, bs, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.r = nn.LSTM(4, 5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.r(z)[0]


class BatchFirstParent(nn.Module):
    """Takes (bs, T, 4) and hands its child (T, bs, 4), rightly transposed."""

    def __init__(self) -> None:
        super().__init__()
        self.child = SeqFirstChild()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.child(z.transpose(0, 1))


@pytest.mark.parametrize(("bs", "T"), [(3, 5), (4, 4)])
def test_watch_inputs_with_ops_names_the_watched_models_input_not_the_first_module_called(bs: int, T: int) -> None:
    """``watch(model, inputs=, ops=True)`` gave its names to the input of whatever module ran first in the block:
    the parent of a watched child, a LayerNorm run on the batch-first sample before the policy. A correct
    transpose then read as a swap. The names go on the watched model's own input, as without ops=True."""
    parent = BatchFirstParent()
    for ops in (False, True):
        with sv.watch(parent.child, inputs="T bs z", ops=ops):
            silent(parent, torch.randn(bs, T, 4))
    policy, norm = nn.Sequential(nn.Linear(4, 4), nn.GRU(4, 5)), nn.LayerNorm(4)
    obs = torch.randn(bs, T, 4)  # a replay sample, batch-first
    for ops in (False, True):
        with sv.watch(policy, inputs="T bs obs", ops=ops):
            silent(lambda: policy(norm(obs).transpose(0, 1)))
    with sv.watch(policy, inputs="bs T obs", ops=True), pytest.raises(sv.ShapeError) as err:
        policy(norm(obs))  # the watched model's input named (bs, T): given as it is to a seq-first GRU
    assert err.value.code == "batch_first_swap", err.value


@pytest.mark.parametrize("layer", [nn.GRU(4, 4), nn.LSTM(4, 4, batch_first=True), nn.GRUCell(4, 4)])
def test_checking_inputs_with_ops_never_names_a_bare_layers_input(layer: nn.Module) -> None:
    """``checking(inputs="bs T", ops=True)`` named a bare layer's input (README: never), and its own correct
    layout then read as swapped; so did the same layer called after a model in the block."""
    x = torch.randn(2, 4) if isinstance(layer, nn.GRUCell) else torch.randn(5, 3, 4)
    tagger = nn.Sequential(nn.Embedding(20, 4), nn.GRU(4, 4, batch_first=True))
    with sv.checking(inputs="bs T", ops=True):
        silent(layer, x)
        silent(tagger, torch.randint(0, 20, (3, 5)))
        silent(layer, x)


class TimeDistributed(nn.Module):
    """A Linear over every step, ``(bs, T, f) -> (bs*T, f) -> (bs, T, f)``, then a batch-first GRU."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.rnn = nn.Linear(4, 4), nn.GRU(4, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bs, T, f = x.shape
        return self.rnn(self.lin(x.reshape(bs * T, f)).reshape(bs, T, -1))[0]


def test_each_batch_in_one_ops_block_has_its_own_sizes() -> None:
    """Two batches of one ``ops=True`` block, 2×6 then 3×4: the merged 12 was split by the first batch's sizes
    and read as a scrambled view."""
    model = TimeDistributed()
    with sv.watch(model, inputs="bs T", ops=True):
        for bs, T in [(2, 6), (3, 4), (4, 3), (2, 6)]:
            silent(model, torch.randn(bs, T, 4))
    with sv.checking(ops=True):
        for bs, T in [(2, 3), (3, 2)]:
            silent(model, sv.name(torch.randn(bs, T, 4), "bs T f"))


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.rnn = nn.Embedding(20, 4), nn.GRU(4, 4)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:  # (T, bs)
        return self.rnn(self.emb(tgt))[0]


class Seq2Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.enc, self.dec = nn.Embedding(20, 4), nn.GRU(4, 4, batch_first=True), Decoder()

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:  # src (bs, S), tgt (bs, U)
        self.enc(self.emb(src))
        return self.dec(tgt.T)


def test_a_named_model_inside_another_with_another_T_says_whose_T_it_is() -> None:
    """The model named "bs T" (src, T=5) and its decoder "T bs" (tgt, 4 steps): one name, two sizes. The
    SpecError blamed sv.dims, never called; it names the outer watch and says to give the second dim another
    name, and with "U bs" the call runs silent."""
    model = Seq2Seq()
    src, tgt = torch.randint(0, 20, (3, 5)), torch.randint(0, 20, (3, 4))
    for ops in (False, True):
        with sv.watch(model, inputs="bs T", ops=ops), sv.watch(model.dec, inputs="U bs", ops=ops):
            silent(model, src, tgt)
        with sv.watch(model, inputs="bs T", ops=ops), sv.watch(model.dec, inputs="T bs", ops=ops), \
                pytest.raises(sv.SpecError) as err:
            model(src, tgt)
        assert "watch(Seq2Seq, inputs='bs T') declared T=5" in str(err.value), err.value
        assert "give this one another name" in str(err.value)
    with sv.watch(model.dec, inputs="T bs"), sv.dims(T=5), pytest.raises(sv.SpecError, match=r"sv\.dims declared T=5"):
        model(src, tgt)


class ByKeyword(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.rnn = nn.Embedding(30, 8), nn.GRU(8, 8)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.emb(input_ids))[0]  # the transpose forgotten: (bs, T, emb) to a seq-first GRU


def test_a_model_input_given_by_keyword_is_named_with_ops() -> None:
    """``model(input_ids=x)`` under ``watch(inputs="bs T", ops=True)``: the keyword input went unnamed (a
    global hook gets no keywords), so bs == T hid the forgotten transpose; given by place it was caught."""
    model, x = ByKeyword(), torch.randint(0, 30, (4, 4))
    for call in (lambda: model(x), lambda: model(input_ids=x)):
        with sv.watch(model, inputs="bs T", ops=True), pytest.raises(sv.ShapeError) as err:
            call()
        assert err.value.code == "batch_first_swap", err.value
