"""Reliability: no false alarm after a fault, per-thread declarations, never breaking the
user's own code (TorchScript, copies, pickling), linear teardown, subclasses read as torch reads them,
SHAPEVIZ_DISABLE read at every entry point, and a cache that never changes a verdict."""

from __future__ import annotations

import copy
import gc
import io
import random
import threading
import warnings

import pytest
import torch
import torch.nn as nn
from conftest import count_global_state, run_in_threads

import shapeviz as sv
from shapeviz.core.dimensions import declared
from shapeviz.runtime import fastcheck, watching
from shapeviz.runtime.diagnosis import diagnose
from shapeviz.typing import Step

BASE_FORWARDS = {cls: cls.__dict__["forward"] for cls in (nn.RNN, nn.LSTM, nn.GRU, nn.RNNCell, nn.LSTMCell,
                                                            nn.GRUCell)}


class Embedded(nn.Module):
    """Tokens (bs, T) -> embedding -> transpose -> a seq-first LSTM: correct for any bs, T."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(30, 4)
        self.rnn = nn.LSTM(4, 6)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.emb(tokens).transpose(0, 1))[0]


def _assert_clean() -> None:
    assert declared() is None
    assert count_global_state() == 0 and not watching._watched and not watching._namers
    assert all(cls.__dict__["forward"] is f for cls, f in BASE_FORWARDS.items())


def _swapped_looking_call() -> None:
    """A valid call that a leftover bs=2, T=5 declaration would call a batch_first_swap: (T=2, bs=5, emb)."""
    with sv.checking():
        nn.LSTM(4, 6)(torch.randn(2, 5, 4))
    sv.check_call(nn.LSTM(4, 6), torch.randn(2, 5, 4))


class Stops(nn.Module):
    def __init__(self, stop: BaseException) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 6)
        self.stop = stop

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        assert {"bs": 2, "T": 5}.items() <= (declared() or {}).items()
        raise self.stop


# ------------------------------------------------------------------------------ 1. BaseException
@pytest.mark.parametrize("stop", [KeyboardInterrupt(), SystemExit(1), GeneratorExit()])
def test_a_watch_left_on_after_an_interrupted_forward_raises_no_false_alarm(stop: BaseException) -> None:
    model = Stops(stop)
    handle = sv.watch(model, inputs="bs T")  # a notebook: the watch stays on across cells
    with pytest.raises(type(stop)):
        model(torch.zeros(2, 5, dtype=torch.long))
    _swapped_looking_call()  # the next valid call anywhere: no false batch_first_swap
    assert declared() is None
    model.stop = KeyError("again")  # the watch still names the next call's input
    with pytest.raises(KeyError):
        model(torch.zeros(2, 5, dtype=torch.long))
    handle.remove()
    _assert_clean()


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), SystemExit(1), GeneratorExit()])
def test_enable_inputs_after_an_interrupted_forward_raises_no_false_alarm(stop: BaseException) -> None:
    model = Stops(stop)
    sv.enable(inputs="bs T")
    try:
        with pytest.raises(type(stop)):
            model(torch.zeros(2, 5, dtype=torch.long))
        nn.LSTM(4, 6)(torch.randn(2, 5, 4))  # still enabled, the leftover is not believed
        model.stop = KeyError("again")
        with pytest.raises(KeyError):
            model(torch.zeros(2, 5, dtype=torch.long))  # its declaration is made afresh (asserted inside)
    finally:
        sv.disable()
    _assert_clean()


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), SystemExit(1), GeneratorExit()])
def test_checking_inputs_and_dry_run_leave_nothing_after_a_base_exception(stop: BaseException) -> None:
    model = Stops(stop)
    with pytest.raises(type(stop)), sv.checking(inputs="bs T"):
        model(torch.zeros(2, 5, dtype=torch.long))
    _assert_clean()
    _swapped_looking_call()
    with pytest.raises(type(stop)):
        sv.dry_run(model, "bs=2,T=5")
    _assert_clean()
    _swapped_looking_call()


@pytest.mark.parametrize("how", ["disable", "remove"])
def test_disable_or_remove_called_inside_a_forward(how: str) -> None:
    holder: dict[str, sv.WatchHandle] = {}

    class StopsChecking(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(4, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            sv.disable() if how == "disable" else holder["h"].remove()
            return self.rnn(x.transpose(0, 1))[0]

    model = StopsChecking()
    holder["h"] = sv.watch(model, inputs="bs T")
    model(torch.randn(2, 5, 4))
    assert not holder["h"].active
    _assert_clean()
    _swapped_looking_call()
    with sv.checking(inputs="bs T"):
        model(torch.randn(2, 5, 4))
    _assert_clean()


# ------------------------------------------------------------------------------ 2. threads
def test_sixteen_threads_checking_inputs_on_a_correct_model() -> None:
    model = Embedded()
    barrier = threading.Barrier(16)

    def work(i: int) -> None:
        tokens = torch.randint(0, 30, (2 + i, 3 + (i * 7) % 11))  # each thread its own (bs, T)
        barrier.wait()
        for _ in range(15):
            with sv.checking(inputs="bs T"):
                assert model(tokens).shape[:2] == (tokens.shape[1], tokens.shape[0])
            with sv.watch(model, inputs="bs T"):
                model(tokens)
        assert declared() is None

    run_in_threads(work, n=16)
    _assert_clean()


def test_a_checking_block_declares_only_for_its_own_thread() -> None:
    model = Embedded()
    inside, done = threading.Event(), threading.Event()
    seen: list[object] = []

    def other() -> None:
        inside.wait()
        seen.append(declared())
        nn.LSTM(4, 6)(torch.randn(2, 5, 4))  # not checked with this thread's... any declaration
        seen.append(declared())
        done.set()

    t = threading.Thread(target=other)
    t.start()

    class Waits(nn.Module):
        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            inside.set()
            done.wait(10)
            return model(tokens)

    with sv.checking(inputs="bs T"):
        Waits()(torch.zeros(2, 5, dtype=torch.long))
    t.join()
    assert seen == [None, None]
    _assert_clean()


# ------------------------------------------------------------------------------ 3. TorchScript
class Calls(nn.Module):
    """What users script: a model that calls the layer (a scripted layer alone has only forward__0/1)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)[0]


MAKERS = [lambda: nn.LSTM(4, 6, 2), lambda: nn.GRU(4, 6), lambda: nn.RNN(4, 6), lambda: nn.LSTMCell(4, 6),
          lambda: nn.GRUCell(4, 6), lambda: nn.RNNCell(4, 6)]


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("how", ["checking", "enable", "watch"])
def test_torch_jit_script_works_while_checking(make, how: str) -> None:
    m = make()
    model = m if isinstance(m, (nn.GRUCell, nn.RNNCell)) else Calls(m)
    x = torch.randn(3, 4) if isinstance(m, (nn.LSTMCell, nn.GRUCell, nn.RNNCell)) else torch.randn(5, 3, 4)
    if how == "checking":
        with sv.checking():
            scripted = torch.jit.script(model)
    elif how == "enable":
        sv.enable()
        scripted = torch.jit.script(model)
        sv.disable()
    else:
        with sv.watch(model):
            scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))
    _assert_clean()


def test_scripted_traced_and_quantized_modules_are_reported_unchecked() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    model.add_module("rnn", torch.jit.script(nn.LSTM(4, 6)))
    model.add_module("q", torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.LSTM(4, 6)), {nn.LSTM},
                                                                  dtype=torch.qint8)[0])
    with pytest.warns(UserWarning, match=r"cannot check rnn, q .*run unchecked") as record:
        handle = sv.watch(model)
    assert handle.unchecked == ["rnn", "q"] and len(record) == 1
    handle.remove()
    traced = torch.jit.trace(nn.GRU(4, 6), torch.randn(5, 3, 4))
    with pytest.warns(UserWarning, match="cannot check <model>"), sv.watch(traced) as handle:
        assert handle.unchecked == [""]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sv.watch(nn.LSTM(4, 6)).remove()  # nothing unchecked: no warning
    _assert_clean()


# ------------------------------------------------------------------------------ 4. teardown
class _CountingDict(dict):
    scans = 0

    def items(self):  # type: ignore[override]
        _CountingDict.scans += 1
        return super().items()

    def __iter__(self):
        _CountingDict.scans += 1
        return super().__iter__()

    def keys(self):  # type: ignore[override]
        _CountingDict.scans += 1
        return super().keys()

    def values(self):  # type: ignore[override]
        _CountingDict.scans += 1
        return super().values()


def test_dropping_checked_modules_never_scans_the_cache(monkeypatch) -> None:
    gc.collect()  # earlier tests' modules in reference cycles die now, while their plans' dict is the real one
    plans = _CountingDict()
    monkeypatch.setattr(fastcheck, "_plans", plans)
    _CountingDict.scans = 0
    x = torch.randn(2, 4)
    modules = [nn.GRUCell(4, 3) for _ in range(500)]
    for m in modules:
        sv.check_call(m, x)
    assert len(plans) == 500
    del modules, m
    gc.collect()
    assert len(plans) == 0 and _CountingDict.scans == 0  # each module's entry dropped by one lookup


# ------------------------------------------------------------------------------ 5. subclasses
class WithLengths(nn.LSTM):
    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]


class TransposesInside(nn.GRU):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return super().forward(x.transpose(0, 1))  # takes (bs, T, emb), runs the seq-first GRU


class PropertyBatchFirst(nn.GRU):
    @property  # type: ignore[override]
    def batch_first(self) -> bool:
        return self._bf

    @batch_first.setter
    def batch_first(self, value: bool) -> None:
        self._bf = value


def test_subclasses_are_checked_on_the_call_torch_makes() -> None:
    m = WithLengths(4, 6)
    with sv.watch(m):
        m(torch.randn(5, 3, 4), torch.tensor([5, 4, 2]))  # lengths is not the state
        with pytest.raises(sv.ShapeError, match="input_size"):
            m(torch.randn(5, 3, 7), torch.tensor([5, 4, 2]))
    t = TransposesInside(4, 6)
    with sv.dims(bs=3, T=5), sv.watch(t):
        t(torch.randn(3, 5, 4))  # (bs, T, emb) given; the GRU is called with (T, bs, emb)
    p = PropertyBatchFirst(4, 6, batch_first=True)
    assert sv.conventions(p).batch_first
    sv.check_call(p, torch.randn(3, 5, 4))
    with sv.dims(bs=3, T=5), pytest.raises(sv.ShapeError, match="batch_first_swap"):
        sv.check_call(p, torch.randn(5, 3, 4))
    with sv.checking():
        p(torch.randn(3, 5, 4))
        m(torch.randn(5, 3, 4), torch.tensor([5, 4, 2]))
    _assert_clean()


# ------------------------------------------------------------------------------ 6. copies
def test_copy_and_save_while_watched() -> None:
    model = Embedded()
    tokens = torch.randint(0, 30, (2, 5))
    handle = sv.watch(model, inputs="bs T")
    twin = copy.deepcopy(model)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    torch.testing.assert_close(twin(tokens), model(tokens))
    handle.remove()
    sv.disable()
    _assert_clean()
    for m in (twin, loaded):
        hooks = [h for mod in m.modules() for h in (*mod._forward_pre_hooks.values(), *mod._forward_hooks.values())]
        assert not hooks  # a copy carries no shapeviz hook at all (runtime/copies.py)
        m(tokens)
        assert declared() is None  # an inert hook declares nothing


# ------------------------------------------------------------------------------ 7. SHAPEVIZ_DISABLE
def test_shapeviz_disable_is_read_at_every_entry_point(monkeypatch) -> None:
    rnn = nn.GRU(4, 6)
    bad = torch.randn(5, 3, 9)

    @sv.check
    def f(x: Step) -> None:  # (bs, emb)
        return None

    f(torch.randn(3, 9))  # binds emb=9 for this call only

    with sv.watch(rnn):
        monkeypatch.setenv("SHAPEVIZ_DISABLE", "1")  # set after the watch started and after import
        with pytest.raises(RuntimeError, match="input_size"):  # torch's own error: shapeviz checked nothing
            rnn(bad)
        sv.check_call(rnn, bad)
        f(torch.randn(5, 3, 9))  # 3-D for a (bs, emb) annotation: not checked
        monkeypatch.setenv("SHAPEVIZ_DISABLE", "0")
        with pytest.raises(sv.ShapeError):
            sv.check_call(rnn, bad)
        with pytest.raises(sv.ShapeError):
            rnn(bad)
        with pytest.raises(sv.ShapeError):
            f(torch.randn(5, 3, 9))  # checked again


# ------------------------------------------------------------------------------ the cache is exact
def _uncached_ok(m: nn.Module, x: torch.Tensor, hx: object) -> bool:
    p = fastcheck.plan_for(m)
    return fastcheck.fast_ok(m, p, x, hx, declared()) or diagnose(m, p.conv, x, hx, declared(), None) is None


def test_cached_and_uncached_verdicts_are_identical() -> None:
    rng = random.Random(0)
    mods = [nn.LSTM(4, 6, 2, bidirectional=True), nn.GRU(4, 6, batch_first=True), nn.LSTMCell(4, 6)]
    checked = 0
    for _ in range(3000):
        m = rng.choice(mods)
        if rng.random() < 0.02:
            m.to(rng.choice([torch.float32, torch.float64]))
        cell = isinstance(m, nn.LSTMCell)
        a, b = rng.choice([2, 3]), rng.choice([2, 3])
        emb = rng.choice([4, 4, 4, 5])
        x = torch.randn(a, emb) if cell else torch.randn(a, b, emb)
        if rng.random() < 0.1:
            x = x.double()
        bs = a if cell or getattr(m, "batch_first", False) else b
        lead = () if cell else (rng.choice([4, 4, 2]),)
        h = torch.zeros(*lead, rng.choice([bs, bs, 1]), 6)
        hx = rng.choice([None, h, (h, h), (h, h.double())]) if not isinstance(m, nn.GRU) else rng.choice([None, h])
        decl = rng.choice([None, {"bs": 2, "T": 3}, {"bs": 3}])
        with sv.dims(**(decl or {})):
            expected = _uncached_ok(m, x, hx)
            try:
                sv.check_call(m, x, hx)
                got = True
            except sv.ShapeError:
                got = False
        assert got == expected, (m, tuple(x.shape), x.dtype, decl)
        checked += got
    assert 100 < checked < 2900  # both verdicts occur often


# ------------------------------------------------------------------------------ stress
class Faulty(nn.Module):
    """Runs a model, then fails the way it is told: an exception, a BaseException, or sv.disable()."""

    def __init__(self, model: nn.Module, fault: BaseException | str | None) -> None:
        super().__init__()
        self.model = model
        self.fault = fault

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        out = self.model(t)
        if self.fault == "disable":
            sv.disable()
        elif isinstance(self.fault, BaseException):
            raise self.fault
        return out


def test_stress_threads_mixed_modes_with_faults() -> None:
    barrier = threading.Barrier(8)
    used: list[nn.Module] = []

    def work(i: int) -> None:
        rng = random.Random(i)
        model = Embedded()
        used.append(model)
        barrier.wait()
        for _ in range(40):
            tokens = torch.randint(0, 30, (rng.choice([2, 3, 4]), rng.choice([3, 5])))
            mode = rng.choice(["watch", "checking", "dims", "enable"])
            outer = Faulty(model, rng.choice([None, None, KeyError("user"), KeyboardInterrupt(), SystemExit(3),
                                              "disable"]))
            used.append(outer)
            try:
                if mode == "watch":
                    with sv.watch(outer, inputs="bs T"):
                        outer(tokens)
                elif mode == "checking":
                    with sv.checking(inputs="bs T"):
                        outer(tokens)
                elif mode == "dims":
                    with sv.dims(bs=tokens.shape[0], T=tokens.shape[1]), sv.checking():
                        outer(tokens)
                else:
                    sv.enable()
                    outer(tokens)
            except (KeyError, KeyboardInterrupt, SystemExit):
                pass
            assert declared() is None or mode == "enable"

    try:
        run_in_threads(work, n=8)
    finally:
        sv.disable()
    _assert_clean()
    assert all(not m._forward_pre_hooks and not m._forward_hooks for root in used for m in root.modules())
    assert not fastcheck._plans or all(p.ref() is not None for p in fastcheck._plans.values())


def test_a_dropped_watched_module_leaves_no_patch_and_no_entry() -> None:
    model = nn.Sequential(nn.LSTM(4, 6))
    handle = sv.watch(model)
    mid = id(model[0])
    model[0] = nn.Identity()  # the watched LSTM is dropped while the watch is on
    gc.collect()
    assert mid not in watching._watched
    assert list(watching._watched) == [id(model)]  # the model stays watched: its code may make a cell on the fly
    fresh = nn.LSTM(4, 6)  # may take the dead LSTM's id: the old handle must not unwatch it
    other = sv.watch(fresh)
    handle.remove()
    with pytest.raises(sv.ShapeError):
        fresh(torch.randn(5, 3, 9))
    other.remove()
    del handle, model
    gc.collect()
    assert all(cls.__dict__["forward"] is f for cls, f in BASE_FORWARDS.items())  # nothing left to check
    _assert_clean()


# ------------------------------------------------------------------ the final review's findings
def _modes() -> list[object]:
    return list(torch.overrides._get_current_function_mode_stack())


def test_watch_ops_handles_come_off_in_any_order_and_leave_other_modes_alone() -> None:
    before = _modes()
    h1, h2 = sv.watch(nn.GRU(8, 8), ops=True), sv.watch(nn.GRU(8, 8), ops=True)
    h1.remove()  # not the top of the mode stack
    with torch.device("meta"):
        h2.remove()  # the device context entered after it stays in place
        assert torch.zeros(2).device.type == "meta"
    assert _modes() == before and count_global_state() == 0


def test_watch_ops_removed_from_another_thread_is_refused_then_removed_by_its_own() -> None:
    before = _modes()
    h = sv.watch(nn.GRU(8, 8), ops=True, inputs="bs T emb")
    errors: list[BaseException] = []

    def other() -> None:
        try:
            h.remove()
        except BaseException as e:  # the SpecError this test expects
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], sv.SpecError) and "thread that created it" in str(errors[0])
    assert not watching._watched and not watching._ORIGINAL_FORWARDS  # stopped there, but for the op tracking
    h.remove()
    assert _modes() == before and count_global_state() == 0


def test_shapeviz_disable_turns_off_watch_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHAPEVIZ_DISABLE", "1")
    before = _modes()
    emb, rnn = nn.Embedding(10, 8), nn.GRU(8, 8)
    with sv.watch(nn.ModuleList([emb, rnn]), inputs="bs T", ops=True):
        assert _modes() == before
        e = emb(torch.zeros(4, 7, dtype=torch.long))  # (bs, T, emb)
        rnn(e.view(7, 4, -1))  # the scrambled view, unchecked as asked


def test_inputs_naming_more_dims_than_an_unbatched_input_has_is_no_alarm() -> None:
    tagger = nn.Sequential(nn.Embedding(100, 8), nn.LSTM(8, 16, batch_first=True))
    with sv.watch(tagger, inputs="bs T"):
        out, _ = tagger(torch.randint(0, 100, (9,)))  # one unbatched sequence: torch accepts it
    assert tuple(out.shape) == (9, 16)


def test_watch_inputs_compiles_fullgraph() -> None:
    old = torch._dynamo.config.allow_rnn
    torch._dynamo.config.allow_rnn = True
    torch._dynamo.reset()
    try:
        model = nn.Sequential(nn.Linear(8, 8), nn.GRU(8, 16))
        x = torch.randn(5, 3, 8)
        with sv.watch(model, inputs="T bs emb"):
            out, _ = torch.compile(model, backend="eager", fullgraph=True)(x)
        assert torch.allclose(out, model(x)[0])
    finally:
        torch._dynamo.reset()
        torch._dynamo.config.allow_rnn = old
