"""watch(model, inputs=) without hooks: the model's class declares the names around each call of
that model. What it names is what the caller passed (hooks of yours cannot change it), per thread and task,
nothing is left after any exception, copies are not named, and every class gets its own ``_call_impl`` back.
No timing here: bench/bench_watch.py measures."""

from __future__ import annotations

import asyncio
import copy
import io
import pickle
import sys
import threading

import pytest
import torch
import torch.nn as nn
from conftest import count_global_state

import shapeviz as sv
from shapeviz.core.dimensions import declared
from shapeviz.runtime import rootcall


class Seen(nn.Module):
    """Records what is declared while its forward runs (and in the cell loop inside it)."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(4, 6)
        self.seen: list[object] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (bs, T, 4)
        self.seen.append(declared())
        h = x.new_zeros(x.shape[0], 6)
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
            self.seen.append(declared())
        return h


class Forgot(nn.Module):
    """(bs, T) tokens -> embedding -> a seq-first LSTM, untransposed: a silent mistake inputs= catches."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 4)
        self.rnn = nn.LSTM(4, 6)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.emb(ids))[0]


def _clean(*classes: type) -> None:
    assert all("_call_impl" not in c.__dict__ and "__call__" not in c.__dict__ for c in classes)
    assert rootcall.named_roots() == 0 and declared() is None and count_global_state() == 0


def test_names_are_declared_around_each_call_and_only_then() -> None:
    m = Seen()
    with sv.watch(m, inputs="bs T") as handle:
        assert "_call_impl" in Seen.__dict__ and "__call__" not in Seen.__dict__  # one wrapper, on the class
        assert not m._forward_pre_hooks and not m._forward_hooks
        m(torch.randn(2, 3, 4))
        assert declared() is None  # outside the call
        m(torch.randn(5, 1, 4))
        assert handle.active
    assert m.seen == [{"bs": 2, "T": 3}] * 4 + [{"bs": 5, "T": 1}] * 2  # in the cell loop too
    _clean(Seen)


def test_a_hook_of_yours_does_not_change_what_inputs_names() -> None:
    model = Forgot()
    ids = torch.randint(0, 20, (3, 7))  # (bs=3, T=7)

    def transpose(module: nn.Module, args: tuple) -> tuple:
        return (args[0].t(),)  # makes the call right for the LSTM: (T, bs) ids

    with sv.watch(model, inputs="bs T"):
        handles = [model.register_forward_pre_hook(transpose, prepend=True),  # registered after watch, first
                   nn.modules.module.register_module_forward_pre_hook(lambda m, a: None)]
        try:
            model(ids)  # the hook transposed it: right, and named as the caller passed it (bs=3, T=7)
            seen = []
            model.register_forward_pre_hook(lambda m, a: seen.append(declared()), prepend=True)
            model(ids)
            assert seen == [{"bs": 3, "T": 7}]
        finally:
            for h in handles:
                h.remove()
    model._forward_pre_hooks.clear()
    with sv.watch(model, inputs="bs T"), pytest.raises(sv.ShapeError, match=r"\[batch_first_swap\]"):
        model(ids)
    _clean(Forgot)


@pytest.mark.parametrize("around", ["nothing", "forward_hook", "global_forward_hook", "global_pre_hook",
                                    "full_backward_hook", "forward_on_the_instance"])
def test_a_named_call_runs_what_torchs_call_would(around: str) -> None:
    """With nothing around the call the wrapper runs ``self.forward`` itself, as torch's ``_call_impl`` would;
    anything of torch's around it (a hook of the module's or a global one) still runs, once."""
    model = Seen()
    ran: list[str] = []
    handles = []
    if around == "forward_hook":
        handles.append(model.register_forward_hook(lambda m, a, out: ran.append("hook")))
    elif around == "global_forward_hook":
        handles.append(nn.modules.module.register_module_forward_hook(
            lambda m, a, out: ran.append("hook") if m is model else None))
    elif around == "global_pre_hook":
        handles.append(nn.modules.module.register_module_forward_pre_hook(
            lambda m, a: ran.append("hook") if m is model else None))
    elif around == "full_backward_hook":
        handles.append(model.register_full_backward_hook(lambda m, gi, go: ran.append("hook")))
    elif around == "forward_on_the_instance":
        plain = model.forward
        model.forward = lambda x: (ran.append("hook"), plain(x))[1]  # type: ignore[method-assign]
    x = torch.randn(2, 3, 4, requires_grad=True)
    try:
        with sv.watch(model, inputs="bs T"):
            for _ in range(2):  # the first call declares the long way, the second repeats it
                model(x).sum().backward()
    finally:
        for h in handles:
            h.remove()
    assert ran == ([] if around == "nothing" else ["hook"] * 2)
    assert model.seen == [{"bs": 2, "T": 3}] * 8
    _clean(Seen)


def test_a_module_missing_torchs_hook_tables_fails_as_torch_makes_it_fail() -> None:
    model = Seen()
    del model.__dict__["_backward_pre_hooks"]  # as a module unpickled from a torch without them would be
    with pytest.raises(AttributeError) as unnamed:
        model(torch.randn(2, 3, 4))
    with sv.watch(model, inputs="bs T"), pytest.raises(AttributeError) as named:
        model(torch.randn(2, 3, 4))
    assert str(named.value) == str(unnamed.value) and "_backward_pre_hooks" in str(named.value)
    _clean(Seen)


def test_a_named_model_traced_by_torch_jit_runs_torchs_call() -> None:
    model = Seen()
    with sv.watch(model, inputs="bs T"):
        traced = torch.jit.trace(model, torch.randn(2, 3, 4), check_trace=False)
        assert model.seen == [{"bs": 2, "T": 3}] * 4  # traced through torch's _call_impl (its _slow_forward)
    assert traced(torch.randn(2, 3, 4)).shape == (2, 6)
    _clean(Seen)


@pytest.mark.parametrize("stop", [KeyError("user"), KeyboardInterrupt(), SystemExit(2)])
def test_nothing_is_left_after_an_exception(stop: BaseException) -> None:
    class Stops(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert declared() == {"bs": 2, "T": 5}
            raise stop

    model = Stops()
    handle = sv.watch(model, inputs="bs T")
    for _ in range(2):
        with pytest.raises(type(stop)):
            model(torch.zeros(2, 5))
        assert declared() is None
    handle.remove()
    _clean(Stops)


def test_copies_pickle_and_are_not_named() -> None:
    model = Seen()
    with sv.watch(model, inputs="bs T"):
        twin = copy.deepcopy(model)
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        thawed = pickle.loads(pickle.dumps(model))
        x = torch.randn(2, 3, 4)
        for other in (twin, loaded, thawed):
            other.seen.clear()
            other(x)
            assert other.seen == [None] * 4  # the class is shared, the name is the original's alone
        model.seen.clear()
        model(x)
        assert model.seen == [{"bs": 2, "T": 3}] * 4
    assert "_call_impl" not in Seen.__dict__ and "_call_impl" not in vars(twin)
    _clean(Seen)


def test_handles_share_a_namer_and_the_class_patch_goes_with_the_last() -> None:
    a, b = Seen(), Seen()
    h1 = sv.watch(a, inputs="bs T")
    h2 = sv.watch(a, inputs="bs T")
    h3 = sv.watch(b, inputs="T bs")
    h1.remove()
    a(torch.randn(2, 3, 4))
    b(torch.randn(2, 3, 4))
    assert a.seen[0] == {"bs": 2, "T": 3} and b.seen[0] == {"T": 2, "bs": 3}
    h2.remove()
    assert "_call_impl" in Seen.__dict__  # b is still named
    a.seen.clear()
    a(torch.randn(2, 3, 4))
    assert a.seen[0] is None
    h3.remove()
    _clean(Seen)


def test_a_subclass_and_its_base_both_named_declare_once_each() -> None:
    class Sub(Seen):
        pass

    base, sub = Seen(), Sub()
    with sv.watch(base, inputs="bs T"), sv.watch(sub, inputs="bs T"):
        sub(torch.randn(2, 3, 4))
        base(torch.randn(4, 1, 4))
    assert sub.seen[0] == {"bs": 2, "T": 3} and base.seen[0] == {"bs": 4, "T": 1}
    _clean(Seen, Sub)


def test_a_model_called_inside_itself_keeps_its_outer_names() -> None:
    class Recurse(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[object] = []

        def forward(self, x: torch.Tensor, depth: int = 0) -> torch.Tensor:
            self.seen.append(declared())
            return self(x[:1], depth + 1) if depth == 0 else x

    m = Recurse()
    with sv.watch(m, inputs="bs T"):
        m(torch.zeros(3, 5))
    assert m.seen == [{"bs": 3, "T": 5}, {"bs": 3, "T": 5}]
    _clean(Recurse)


def test_threads_and_tasks_see_only_their_own_names() -> None:
    model = Seen()
    inside, done = threading.Event(), threading.Event()
    other: list[object] = []

    class Waits(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            inside.set()
            done.wait(10)
            return model(x)

    def elsewhere() -> None:
        inside.wait(10)
        other.append(declared())  # another thread, while the named call runs in the first one
        model(torch.randn(7, 1, 4))  # its own call: its own sizes
        done.set()

    t = threading.Thread(target=elsewhere)
    t.start()
    with sv.watch(model, inputs="bs T"):
        Waits()(torch.randn(2, 3, 4))
        t.join()

        async def call(x: torch.Tensor) -> object:
            await asyncio.sleep(0)
            model(x)
            return declared()

        async def both() -> list[object]:
            return list(await asyncio.gather(call(torch.randn(1, 2, 4)), call(torch.randn(3, 1, 4))))

        assert asyncio.run(both()) == [None, None]
    assert other == [None]
    assert {"bs": 7, "T": 1} in model.seen and {"bs": 2, "T": 3} in model.seen
    assert {"bs": 1, "T": 2} in model.seen and {"bs": 3, "T": 1} in model.seen
    _clean(Seen)


def test_disable_takes_every_class_patch_off() -> None:
    a, f = Seen(), Forgot()
    sv.watch(a, inputs="bs T")
    sv.watch(f, inputs="bs T")
    assert "_call_impl" in Seen.__dict__ and "_call_impl" in Forgot.__dict__
    sv.disable()
    _clean(Seen, Forgot)
    f(torch.randint(0, 20, (3, 7)))  # nothing named, nothing checked: torch runs it


def test_stack_declared_reads_the_named_calls_on_the_stack() -> None:
    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Inner()

        def forward(self, x: torch.Tensor) -> object:
            return self.inner(x[0])

    class Inner(nn.Module):
        def forward(self, y: torch.Tensor) -> object:
            return rootcall.stack_declared()

    outer = Outer()
    with sv.watch(outer, inputs="bs T"), sv.watch(outer.inner, inputs="T emb"):
        assert outer(torch.zeros(2, 3, 4)) == {"bs": 2, "T": 3, "emb": 4}  # the inner one's on top
        assert rootcall.stack_declared() is None
    _clean(Outer, Inner)


def test_a_cell_stepped_t_times_pays_nothing_per_step_for_the_names() -> None:
    """The names are declared once a call of the model: the calls into rootcall do not grow with T (the cell's
    check reads the declaration in force, as any check does)."""

    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.GRUCell(4, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (bs, T, 4)
            h = x.new_zeros(x.shape[0], 6)
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            return h

    def calls_into_rootcall(m: nn.Module, x: torch.Tensor) -> int:
        count = 0

        def profile(frame, event, arg):  # type: ignore[no-untyped-def]
            nonlocal count
            if event == "call" and frame.f_code.co_filename == rootcall.__file__:
                count += 1

        sys.setprofile(profile)
        try:
            m(x)
        finally:
            sys.setprofile(None)
        return count

    m = Loop()
    with sv.watch(m, inputs="bs T"):
        counts = []
        for T in (3, 30):  # each a repeat of a call just made (a new shape also builds its declaration once)
            m(torch.randn(2, T, 4))
            counts.append(calls_into_rootcall(m, torch.randn(2, T, 4)))
        short, long = counts
        with pytest.raises(sv.ShapeError, match=r"\[batch_mismatch\]"):  # the cell is still checked
            m.cell(torch.randn(2, 4), torch.zeros(3, 6))
    assert short == long and 0 < short <= 4, (short, long)
    _clean(Loop)


def test_threads_calling_a_named_model_with_other_shapes_each_see_their_own_names() -> None:
    """The namer keeps its last declaration as one tuple, replaced whole: two threads that call the model with
    different shapes take turns making it, and every call sees the sizes of its own input."""

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wrong: list[tuple[object, tuple[int, ...]]] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            sizes = declared()
            if sizes != {"bs": x.shape[0], "T": x.shape[1]}:
                self.wrong.append((sizes, tuple(x.shape)))
            return x

    m = Probe()
    with sv.watch(m, inputs="bs T"):
        def run(bs: int) -> None:
            x = torch.zeros(bs, 7 - bs)
            for _ in range(3000):
                m(x)

        threads = [threading.Thread(target=run, args=(bs,)) for bs in (2, 3)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(interval)
    assert not m.wrong, m.wrong[:3]
    _clean(Probe)


def test_dims_declared_inside_a_named_call_stand_on_top_and_go_with_it() -> None:
    """``sv.dims`` entered inside the call (or around it) merges with the names in order, the innermost on top,
    and nothing outlives either."""

    class Inside(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[object] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen.append(declared())
            with sv.dims(h=6):
                self.seen.append(declared())
                with sv.dims(T=2):  # declared on top of the names: the innermost stands
                    self.seen.append(declared())
            self.seen.append(declared())
            return x

    m = Inside()
    with sv.watch(m, inputs="bs T"):
        m(torch.zeros(3, 5))
        with sv.dims(emb=4):
            m(torch.zeros(3, 5))
            assert declared() == {"emb": 4}
        with sv.dims(bs=4), pytest.raises(sv.SpecError, match=r"sv\.dims declared bs=4"):
            m(torch.zeros(3, 5))  # declared around the call: the names must agree
    assert m.seen[:4] == [{"bs": 3, "T": 5}, {"bs": 3, "T": 5, "h": 6}, {"bs": 3, "T": 2, "h": 6}, {"bs": 3, "T": 5}]
    assert m.seen[4:] == [{"emb": 4, "bs": 3, "T": 5}, {"emb": 4, "bs": 3, "T": 5, "h": 6},
                          {"emb": 4, "bs": 3, "T": 2, "h": 6}, {"emb": 4, "bs": 3, "T": 5}]
    _clean(Inside)


def test_nested_named_models_each_add_their_names() -> None:
    class Inner(nn.Module):
        def forward(self, y: torch.Tensor) -> object:
            return declared()

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Inner()
            self.swap = False

        def forward(self, x: torch.Tensor) -> object:
            return self.inner(x[0].t() if self.swap else x[0]), declared()

    outer = Outer()
    with sv.watch(outer, inputs="bs T"), sv.watch(outer.inner, inputs="T emb"):
        for _ in range(2):  # the second call repeats the first's declarations
            assert outer(torch.zeros(2, 3, 4)) == ({"bs": 2, "T": 3, "emb": 4}, {"bs": 2, "T": 3})
        outer.swap = True
        with pytest.raises(sv.SpecError, match="T=4"):
            outer(torch.zeros(2, 3, 4))  # the inner model's input read (T=4, emb=3) where the outer says T=3
    _clean(Outer, Inner)
