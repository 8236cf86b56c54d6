"""A trace names its records and groups repeated steps when it is first read (``Trace._unfinished``): what it reads
is what an eager trace gave, it holds no tensor meanwhile (an index tensor of ``x[idx]`` included), the collector's
threshold is back after the read too, and pickle, copy and two threads reading at once see the finished trace."""

from __future__ import annotations

import copy
import gc
import pickle
import threading
import weakref

import torch
import torch.nn as nn

import shapeviz as sv
from shapeviz.tracing.records import Trace
from shapeviz.tracing.runs import Calls


class _Scratch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.W_xh = nn.Parameter(torch.randn(4, 6))
        self.W_hh = nn.Parameter(torch.randn(6, 6))

    def forward(self, x: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        for X in x:
            H = torch.tanh(X @ self.W_xh + H @ self.W_hh)
        return H


def _unread(t: Trace) -> bool:
    return "_finish" in t.__dict__


def test_a_trace_is_finished_on_its_first_read_as_it_was_made_before() -> None:
    model, x, h = _Scratch(), torch.zeros(6, 2, 4), torch.zeros(2, 6)
    with sv.dims(bs=2):
        t = sv.trace(model, x, h, ops=True)
    assert _unread(t)
    calls = t.calls  # read outside sv.dims: the names it declared still count
    assert not _unread(t) and isinstance(calls, Calls)
    assert calls.runs() == [(6, 4, 5)]
    assert calls[-1].outputs[0].names == ("bs", "")
    again = Trace.from_json(t.to_json())
    assert again == t and t == again


def test_sizes_alone_finish_it_and_the_read_restores_the_collector_threshold() -> None:
    before = gc.get_threshold()
    t = sv.trace(nn.GRU(4, 8), torch.zeros(5, 2, 4), ops=True)
    assert gc.get_threshold() == before and _unread(t)
    assert t.sizes["T"] == [5]
    assert gc.get_threshold() == before and not _unread(t)


def test_an_unread_trace_holds_no_tensor_not_even_an_index() -> None:
    idx = torch.tensor([1, 0])
    x = torch.zeros(3, 2, 4)

    def forward(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return x[idx][:, idx].sum(-1)

    refs = [weakref.ref(idx), weakref.ref(x)]
    t = sv.trace(forward, x, idx, ops=True)
    del x, idx
    gc.collect()
    assert [r() for r in refs] == [None, None] and _unread(t)
    assert [c.type for c in t.calls if c.kind == "op"] == ["__getitem__", "__getitem__", "sum"]


def test_pickle_and_copy_keep_the_finished_trace() -> None:
    t = sv.trace(_Scratch(), torch.zeros(4, 2, 4), torch.zeros(2, 6), ops=True)
    twin = copy.copy(t)
    assert not _unread(t) and not _unread(twin) and twin == t
    u = sv.trace(_Scratch(), torch.zeros(4, 2, 4), torch.zeros(2, 6), ops=True)
    back = pickle.loads(pickle.dumps(u))
    assert not _unread(back) and back.calls.runs() == u.calls.runs() and len(back.calls) == len(u.calls)


def test_two_threads_reading_at_once_see_one_finished_trace() -> None:
    t = sv.trace(_Scratch(), torch.zeros(50, 2, 4), torch.zeros(2, 6), ops=True)
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(t.calls)) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(seen) == 4 and all(s is seen[0] for s in seen)


def test_a_missing_attribute_is_still_an_attribute_error() -> None:
    t = sv.trace(nn.GRU(4, 8), torch.zeros(5, 2, 4))
    try:
        t.nothing  # noqa: B018
    except AttributeError as e:
        assert str(e) == "'Trace' object has no attribute 'nothing'"
    else:
        raise AssertionError("no AttributeError")
    assert _unread(t)


def test_a_trace_past_the_unread_limit_is_finished_at_once(monkeypatch) -> None:
    """What an unread trace holds stays bounded: past UNREAD_RECORDS records sv.trace names and groups them at once,
    and the finished trace is the one a first read would have made."""
    from shapeviz.tracing import session

    model, x, h = _Scratch(), torch.zeros(12, 2, 4), torch.zeros(2, 6)  # 12 steps of 4 ops, 2 module calls: 50

    def run() -> Trace:
        return sv.trace(model, x, h, ops=True)  # one line: the root call's site is the same

    lazy = run()
    assert _unread(lazy)
    monkeypatch.setattr(session, "UNREAD_RECORDS", 40)
    eager = run()
    assert not _unread(eager)
    assert eager == lazy and str(eager) == str(lazy)
