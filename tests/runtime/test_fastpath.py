"""The fast path is exact: the memo of the last call that fit and the in-line reads of the hot path
never accept a call the slow path (``shapeviz.runtime.diagnosis``) rejects, whatever changed since the last
call; and the patched forwards take torch's own arguments. No timing here: bench/ measures."""

from __future__ import annotations

import inspect
import random
from typing import Any

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

import shapeviz as sv
from shapeviz.core.dimensions import declared
from shapeviz.core.model import conventions
from shapeviz.runtime import fastcheck, hotpath, tensorguard
from shapeviz.runtime.diagnosis import diagnose


def _reference(m: nn.Module, x: Any, hx: Any) -> str | None:
    """The verdict of the uncached path: the rule read fresh (a new plan, no memo) and, where it rejects,
    the slow path; None (fine) or the error code."""
    decl = declared()
    fresh = fastcheck.CallPlan(m, conventions(m))
    err = diagnose(m, conventions(m), x, hx, decl, None)
    if fastcheck.fast_ok(m, fresh, x, hx, decl):
        # the rule never accepts what the slow path rejects; one exception, where the slow path is stricter
        # than torch: an LSTMCell's c_0 of another dtype, which torch promotes
        assert err is None or (isinstance(m, nn.LSTMCell) and err.code == "dtype" and hx[1].dtype != x.dtype)
        return None
    return None if err is None else err.code


def _verdict(m: nn.Module, x: Any, hx: Any, how: str, checkers: dict[int, Any] | None = None) -> str | None:
    try:
        if how == "checker":  # sv.checker's check, one per module, its memo its own (read whole on each call)
            assert checkers is not None
            checkers.setdefault(id(m), sv.checker(m))(x, hx)
        elif how == "kwargs":
            sv.check_call(m, input=x, hx=hx)
        elif how == "positional" or hx is not None:
            sv.check_call(m, x, hx)
        else:
            sv.check_call(m, x)
    except sv.ShapeError as err:
        return err.code
    return None


def _modules() -> list[nn.Module]:
    return [nn.LSTM(4, 6, 2, bidirectional=True), nn.LSTM(4, 6, proj_size=3), nn.GRU(4, 6, batch_first=True),
            nn.RNN(4, 6, 2), nn.LSTMCell(4, 6), nn.GRUCell(4, 6), nn.RNNCell(4, 6)]


FAULTS = ("emb", "x_float64", "x_int", "ndim4", "layout", "state_bs", "h_size", "c_size", "h_float64", "c_float64",
          "h_meta", "c_meta", "x_meta", "structure")


def _random_call(rng: random.Random, m: nn.Module) -> tuple[Any, Any]:
    """A right call (unbatched or packed at times), or one with one or two faults of the kinds the fast path
    reads: shape, layout, dtype, device (meta: shapes without data, no GPU needed), state structure."""
    c = conventions(m)
    lay = c.layout
    faults = set(rng.sample(FAULTS, rng.choice([0, 0, 1, 1, 2])))
    T, bs = rng.choice([2, 3]), rng.choice([2, 3])
    batched = rng.random() < 0.85
    emb = 5 if "emb" in faults else 4
    if lay.cell:
        shape: tuple[int, ...] = (bs, emb) if batched else (emb,)
    elif batched:
        shape = (bs, T, emb) if lay.bs_axis == 0 else (T, bs, emb)
        if "layout" in faults:
            shape = (shape[1], shape[0], emb)
    else:
        shape = (T, emb)
    if "ndim4" in faults:
        shape = (1, *shape) if len(shape) > 2 else (1, 1, 1, emb)
    dtype = torch.float64 if "x_float64" in faults else torch.int64 if "x_int" in faults else torch.float32
    x: Any = torch.zeros(shape, dtype=dtype, device="meta" if "x_meta" in faults else "cpu")
    if len(shape) > 1 and rng.random() < 0.15:  # the same shape, other strides (torch's guard leaves them free)
        x = torch.zeros(shape[::-1], dtype=dtype, device=x.device).permute(*reversed(range(len(shape))))
    if dtype.is_floating_point and rng.random() < 0.2:
        x.requires_grad_(True)  # what the guard compares too: a hit or a miss, the verdict must not change
    if not lay.cell and batched and not faults & {"layout", "ndim4", "x_meta"} and rng.random() < 0.1:
        lengths = torch.tensor(sorted([rng.randint(1, T) for _ in range(bs)], reverse=True))
        x = pack_padded_sequence(x, lengths, batch_first=lay.bs_axis == 0)
    sizes = c.shapes(T=T, bs=bs + 1 if "state_bs" in faults else bs)
    want_h = sizes["h_0"]
    h_shape = tuple(want_h) if batched else tuple(s for i, s in enumerate(want_h) if i != lay.state_bs_axis)
    if "h_size" in faults:
        h_shape = (*h_shape[:-1], h_shape[-1] + 1)
    c_shape = (*h_shape[:-1], lay.c_size + ("c_size" in faults))
    h = torch.zeros(h_shape, dtype=torch.float64 if "h_float64" in faults else torch.float32,
                    device="meta" if "h_meta" in faults else "cpu")
    cc = torch.zeros(c_shape, dtype=torch.float64 if "c_float64" in faults else torch.float32,
                     device="meta" if "c_meta" in faults else "cpu")
    if rng.random() < 0.2:
        h.requires_grad_(True)
    if lay.state_arity == 2:
        hx = rng.choice([h, (h,), (h, cc, cc)] if "structure" in faults else [None, (h, cc), (h, cc), [h, cc]])
    else:
        hx = rng.choice([(h,), (h, h)] if "structure" in faults else [None, h, h])
    return x, hx


@pytest.mark.parametrize("guards", [True, False], ids=["torch-guard", "python-reads"])
def test_fast_path_verdicts_equal_the_slow_paths_under_random_calls_and_changes(
        guards: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random modules, calls, declarations, dtypes and configuration changes made after earlier calls: every
    verdict of check_call and of each module's sv.checker (memo hit or not) equals the uncached slow path's, error
    code included; with torch's one-call guard (runtime.tensorguard) and, as on a torch without it, without."""
    if not guards:
        monkeypatch.setattr(hotpath, "guards_work", lambda: False)
    elif not tensorguard.guards_work():
        pytest.skip("torch's TensorGuards is not usable in this torch: the hot path reads in Python alone")
    rng = random.Random(15)
    mods = _modules()
    checkers: dict[int, Any] = {}
    seen: set[str | None] = set()
    last: dict[int, tuple[Any, Any]] = {}
    for step in range(3000):
        m = rng.choice(mods)
        change = rng.choice(["dtype", "batch_first", "num_layers"]) if rng.random() < 0.06 else None
        before = (m.weight_ih_l0 if isinstance(m, nn.RNNBase) else m.weight_ih).dtype, dict(m.__dict__)
        if change == "dtype":
            m.double()  # the weights' dtype changed in place, after calls the memo holds
        elif change == "batch_first" and hasattr(m, "batch_first"):
            m.batch_first = not m.batch_first  # the configuration changed after calls
        elif change == "num_layers" and isinstance(m, nn.RNNBase):
            m.num_layers = 3 - m.num_layers  # a setting the plan's key reads
        if id(m) in last and rng.random() < 0.4:
            x, hx = last[id(m)]  # a repeat: the memo answers, unless something above changed
        else:
            x, hx = _random_call(rng, m)
        decl = rng.choice([None, None, {"bs": 2, "T": 3}, {"bs": 3, "T": 2}, {"bs": 3}, {"T": 2}])
        with sv.dims(**(decl or {})):
            expected = _reference(m, x, hx)
            got = _verdict(m, x, hx, rng.choice(["positional", "kwargs", "omit", "checker"]), checkers)
            again = _verdict(m, x, hx, "positional")  # the same call at once: a memo hit where it fit
            checked = _verdict(m, x, hx, "checker", checkers)  # the checker's memo may lag the plan's
        assert got == expected == again == checked, (step, m, change, getattr(x, "shape", type(x)),
                                          hx if hx is None else type(hx), decl)
        seen.add(got)
        last[id(m)] = (x, hx)
        m.to(before[0])  # undo the change: the memo now rests on the changed module
        m.__dict__.update(before[1])
    assert None in seen and len(seen) >= 8  # fine calls and many kinds of mistake both occur


def test_memo_is_never_believed_once_anything_it_rests_on_changes() -> None:
    m = nn.LSTM(4, 6, 2)
    x, h, c = torch.randn(5, 3, 4), torch.zeros(2, 3, 6), torch.zeros(2, 3, 6)
    sv.check_call(m, x, (h, c))  # fits: the memo now holds (5, 3, 4)
    with pytest.raises(sv.ShapeError, match="batch_mismatch"):
        sv.check_call(m, x, (torch.zeros(2, 2, 6), c))  # same input shape, other state batch
    with pytest.raises(sv.ShapeError, match="dtype"):
        sv.check_call(m, x, (h.double(), c))
    with pytest.raises(sv.ShapeError, match="dtype"):
        sv.check_call(m, x, (h, c.double()))
    with sv.dims(bs=5, T=3), pytest.raises(sv.ShapeError, match="batch_first_swap"):
        sv.check_call(m, x)  # same shape, a declaration that names it (bs, T, emb)
    sv.check_call(m, x, (h, c))
    m.batch_first = True  # configuration changed: (5, 3, 4) is now (bs=5, T=3) and h's batch 3 is wrong
    with pytest.raises(sv.ShapeError):
        sv.check_call(m, x, (h, c))
    m.batch_first = False
    sv.check_call(m, x, (h, c))
    m.double()  # the weights' dtype changed in place: the same float32 call no longer fits
    with pytest.raises(sv.ShapeError, match="dtype"):
        sv.check_call(m, x, (h, c))
    m.float()
    sv.check_call(m, x, (h, c))
    with pytest.raises(sv.ShapeError, match="state_type"):
        sv.check_call(m, x, h)  # a tensor where (h_0, c_0) belongs


def test_lstmcell_promotes_c_dtype_as_torch_does() -> None:
    cell = nn.LSTMCell(4, 6)
    x, h = torch.randn(3, 4), torch.zeros(3, 6)
    sv.check_call(cell, x, (h, h))
    sv.check_call(cell, x, (h, h.double()))  # torch's LSTMCell accepts it: so does the fast path
    cell(x, (h, h.double()))
    with pytest.raises(sv.ShapeError, match="dtype"):
        sv.check_call(cell, x, (h.double(), h))


def test_plans_memo_is_one_tuple_replaced_whole() -> None:
    """Threads read the memo without a lock: shape and states must come from one call, so it is one tuple."""
    m = nn.GRU(4, 6)
    sv.check_call(m, torch.randn(5, 3, 4))
    memo = fastcheck.plan_for(m).memo
    assert memo == (torch.Size([5, 3, 4]), None, (1, 3, 6), (1, 3, 6))
    sv.check_call(m, torch.randn(7, 2, 4))
    assert fastcheck.plan_for(m).memo[2] == (1, 2, 6) and memo[2] == (1, 3, 6)


def test_patched_forwards_take_torchs_arguments() -> None:
    lstm = nn.LSTM(4, 6)
    original = nn.LSTM.forward
    x, hx = torch.randn(5, 3, 4), (torch.zeros(1, 3, 6), torch.zeros(1, 3, 6))
    with sv.watch(lstm):
        assert nn.LSTM.forward is not original
        assert inspect.signature(nn.LSTM.forward) == inspect.signature(original)
        for call in (lambda: lstm(x), lambda: lstm(x, hx), lambda: lstm(x, hx=hx), lambda: lstm(input=x, hx=hx)):
            assert call()[0].shape == (5, 3, 6)
        with pytest.raises(sv.ShapeError, match="hidden_size"):
            lstm(input=x, hx=(torch.zeros(1, 3, 7), hx[1]))
        with pytest.raises(TypeError, match="positional argument"):
            lstm(x, hx, "extra")  # as torch's own forward would
        nn.GRUCell(4, 6)(torch.randn(3, 4))  # an unwatched module runs unchecked through the patched forward
    assert nn.LSTM.forward is original


def test_a_state_on_another_device_than_the_input_reads_right() -> None:
    rnn = torch.nn.GRU(4, 8)
    with pytest.raises(sv.ShapeError) as info:
        sv.check_call(rnn, torch.zeros(5, 2, 4), torch.zeros(1, 2, 8, device="meta"))
    assert info.value.code == "device"
    assert "on meta, but the input is on cpu" in str(info.value)
    assert "hint: h0 = h0.to('cpu')" in str(info.value)


def test_a_cells_c0_of_another_dtype_is_not_the_fault() -> None:
    # torch's LSTMCell promotes c_0's dtype; the fault here is its device, and that is what is reported
    cell = torch.nn.LSTMCell(4, 8)
    c0 = torch.zeros(2, 8, dtype=torch.float64, device="meta")
    with pytest.raises(sv.ShapeError) as info:
        sv.check_call(cell, torch.zeros(2, 4), (torch.zeros(2, 8), c0))
    assert info.value.code == "device"


def test_a_plan_goes_with_its_module_so_a_new_module_at_its_id_is_judged_afresh() -> None:
    """The hot path trusts the plan found by ``id``: a dead module's plan must be gone before its id is reused."""
    import gc

    x = torch.randn(5, 3, 4)
    for _ in range(50):
        m = nn.GRU(4, 6)
        sv.check_call(m, x)  # fits: a plan with a hot path for (5, 3, 4)
        mid = id(m)
        del m
        gc.collect()
        assert mid not in fastcheck._plans
        other = nn.GRU(9, 6)  # often at the same address
        with pytest.raises(sv.ShapeError, match="input_size"):
            sv.check_call(other, x)
        del other


def test_a_setting_set_again_to_an_equal_value_is_still_fast_and_a_changed_one_is_seen() -> None:
    m = nn.LSTM(4, 300)  # 300: an int Python does not cache, so setting it again makes a new object
    x = torch.randn(5, 3, 4)
    sv.check_call(m, x)
    plan = fastcheck.plan_for(m)
    assert plan.hot(m, x, None)
    m.hidden_size = int("300")  # equal, another object: the hot path sends one call the long way
    assert not plan.hot(m, x, None)
    sv.check_call(m, x)
    assert fastcheck.plan_for(m).hot(m, x, None)  # made afresh for the object now held
    m.hidden_size = 301
    assert not fastcheck.plan_for(m).hot(m, x, (torch.zeros(1, 3, 301), torch.zeros(1, 3, 301)))
    with pytest.raises(sv.ShapeError, match="hidden_size"):
        sv.check_call(m, x, (torch.zeros(1, 3, 300), torch.zeros(1, 3, 300)))


def test_the_kill_switch_set_to_false_still_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    m = nn.GRU(4, 6)
    sv.check_call(m, torch.randn(5, 3, 4))
    monkeypatch.setenv("SHAPEVIZ_DISABLE", "0")  # set, but not to a true value: every call the long way
    sv.check_call(m, torch.randn(5, 3, 4))
    with pytest.raises(sv.ShapeError, match="input_size"):
        sv.check_call(m, torch.randn(5, 3, 9))
    monkeypatch.setenv("SHAPEVIZ_DISABLE", "1")
    sv.check_call(m, torch.randn(5, 3, 9))


def test_check_call_reads_arguments_as_torch_does() -> None:
    m = nn.LSTM(4, 6)
    x, hx = torch.randn(5, 3, 4), (torch.zeros(1, 3, 6), torch.zeros(1, 3, 6))
    bad = (torch.zeros(1, 2, 6), torch.zeros(1, 2, 6))
    for call in (lambda h: sv.check_call(m, x, h), lambda h: sv.check_call(m, x, hx=h),
                 lambda h: sv.check_call(m, input=x, hx=h)):
        call(hx)
        call(None)
        with pytest.raises(sv.ShapeError, match="batch_mismatch"):
            call(bad)
    with pytest.raises(TypeError, match="no input"):  # torch's forward() refuses it too
        sv.check_call(m)
    with pytest.raises(sv.ShapeError, match="input_size"):
        sv.check_call(m, input=torch.randn(5, 3, 9))


@pytest.mark.parametrize("m", [nn.LSTM(4, 6, 2, bidirectional=True), nn.GRU(4, 6), nn.LSTMCell(4, 6)])
def test_the_hot_path_rereads_every_setting_the_shape_rule_reads(m: nn.Module) -> None:
    """Each setting conventions() reads sends a repeat call the long way once it changes; RNNBase.mode, which no
    shape reads (the family is the class's), is the one setting of the plan's key the hot path leaves out."""
    x = torch.randn(3, 4) if isinstance(m, nn.LSTMCell) else torch.randn(5, 3, 4)
    sv.check_call(m, x)
    plan = fastcheck.plan_for(m)
    assert plan.hot(m, x, None)
    shape_settings = ["input_size", "hidden_size"]
    if isinstance(m, nn.RNNBase):
        shape_settings += ["num_layers", "bidirectional", "batch_first", "proj_size"]
    for name in shape_settings:
        before = m.__dict__[name]
        m.__dict__[name] = (not before) if isinstance(before, bool) else before + 1  # the way a setting changes
        assert not plan.hot(m, x, None), name
        m.__dict__[name] = before
        assert plan.hot(m, x, None), name
    if isinstance(m, nn.RNNBase):
        conv = conventions(m)
        m.mode = "GRU" if m.mode == "LSTM" else "LSTM"  # nothing a shape depends on
        assert conventions(m) == conv


def test_a_checker_sees_everything_its_memo_rests_on() -> None:
    """sv.checker: the same verdicts as check_call when the state, dtypes, settings, declared sizes or the kill
    switch change between calls that repeat the memo's input shape."""
    m = nn.LSTM(4, 6, 2)
    check = sv.checker(m)
    x, h, c = torch.randn(5, 3, 4), torch.zeros(2, 3, 6), torch.zeros(2, 3, 6)
    assert check(x, (h, c)) is None and check(x) is None and check(input=x, hx=(h, c)) is None
    with pytest.raises(sv.ShapeError, match="batch_mismatch"):
        check(x, (torch.zeros(2, 2, 6), c))
    with pytest.raises(sv.ShapeError, match="dtype"):
        check(x, (h, c.double()))
    with pytest.raises(sv.ShapeError, match="state_type"):
        check(x, h)
    with sv.dims(bs=5, T=3), pytest.raises(sv.ShapeError, match="batch_first_swap"):
        check(x)
    check(x, (h, c))
    m.batch_first = True  # (5, 3, 4) is now (bs=5, T=3): h's batch 3 is wrong
    with pytest.raises(sv.ShapeError):
        check(x, (h, c))
    m.batch_first = False
    m.double()  # the weights' dtype changed in place
    with pytest.raises(sv.ShapeError, match="dtype"):
        check(x, (h, c))
    m.float()
    check(x, (h, c))
    with pytest.raises(sv.ShapeError, match="input_size"):
        check(torch.randn(5, 3, 5))
    cell = nn.GRUCell(4, 6)
    check_cell = sv.checker(cell)
    check_cell(torch.randn(3, 4), torch.zeros(3, 6))
    with pytest.raises(sv.ShapeError, match="batch_mismatch"):
        check_cell(torch.randn(3, 4), torch.zeros(2, 6))


def test_a_checker_is_off_with_the_kill_switch_and_checks_again_after(monkeypatch: pytest.MonkeyPatch) -> None:
    m = nn.GRU(4, 6)
    check = sv.checker(m)
    check(torch.randn(5, 3, 4))
    monkeypatch.setenv("SHAPEVIZ_DISABLE", "1")
    check(torch.randn(5, 3, 9))  # off: nothing judged
    monkeypatch.delenv("SHAPEVIZ_DISABLE")
    with pytest.raises(sv.ShapeError, match="input_size"):
        check(torch.randn(5, 3, 9))


def test_a_checkers_memo_is_one_tuple_read_whole_under_threads() -> None:
    """Two threads check calls of two input shapes on one checker: each verdict is the right one, so no thread
    ever pairs one call's input shape with another call's state shapes."""
    import threading

    m = nn.GRU(4, 6)
    check = sv.checker(m)
    wrong: list[str] = []

    def run(bs: int) -> None:
        x, h, h_other = torch.randn(5, bs, 4), torch.zeros(1, bs, 6), torch.zeros(1, 5 - bs, 6)
        for _ in range(2000):
            check(x, h)
            try:
                check(x, h_other)
            except sv.ShapeError:
                continue
            wrong.append(f"bs={bs}: a state of batch {5 - bs} passed")

    threads = [threading.Thread(target=run, args=(bs,)) for bs in (2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, wrong[:3]


def test_torchs_guard_is_made_once_per_way_of_calling_and_keeps_no_tensor() -> None:
    """The hot path's one-call guard (runtime.tensorguard): made from the first repeat call its Python reads
    accept, one for calls with a state and one without; a miss (here requires_grad) falls back to the reads and
    keeps the guard; it never accepts a call of another state batch or device; it holds no tensor."""
    import gc
    import weakref

    if not tensorguard.guards_work():
        pytest.skip("torch's TensorGuards is not usable in this torch: the hot path reads in Python alone")
    m = nn.LSTM(4, 6)
    x, h, c = torch.randn(5, 3, 4), torch.zeros(1, 3, 6), torch.zeros(1, 3, 6)
    sv.check_call(m, x, (h, c))  # the long way: the memo and its hot path
    guards = fastcheck.plan_for(m).flat[-1]
    assert guards == [None, None]
    sv.check_call(m, x, (h, c))  # the hot path's reads accept it: the guard of (x, w, h, c) is made
    assert guards[0] is None and guards[1] is not None
    assert guards[1](x, m.weight_ih_l0, h, c) and not guards[1](x, m.weight_ih_l0, torch.zeros(1, 2, 6), c)
    sv.check_call(m, x)
    assert guards[0] is not None
    first = guards[1]
    sv.check_call(m, x, (h.clone().requires_grad_(True), c))  # a guard miss, the reads accept: the guard is kept
    assert guards[1] is first and fastcheck.plan_for(m).flat[-1] is guards
    with pytest.raises(sv.ShapeError, match="batch_mismatch"):
        sv.check_call(m, x, (torch.zeros(1, 2, 6), c))
    with pytest.raises(sv.ShapeError, match="device"):
        sv.check_call(m, x, (h, c.to("meta")))
    gone = weakref.ref(x)
    del x
    gc.collect()
    assert gone() is None
