"""Names with evidence: the op rules against real index bookkeeping, guesses, provenance, sv.name."""

from __future__ import annotations

import gc
import json
import threading

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import shapeviz as sv
from shapeviz.tracing.naming import Namer, OpView, declared_names, evidence
from shapeviz.tracing.oprules import op_rule, view_names
from shapeviz.tracing.records import TensorInfo, Trace

# distinct primes: no two named dims (nor products of them) share a size by accident
SIZES = {"T": 3, "bs": 2, "emb": 5, "h": 7}


# ------------------------------------------------------------------ the ground truth
def truth_names(ids: dict[str, torch.Tensor]) -> list[str | None]:
    """The names of each axis of a tensor, from the index tensors carried through the same ops:
    axis j is ``a*b`` when exactly the atoms a, b vary along it, only along it, and its position is
    their mixed-radix index in that order."""
    ndim = next(iter(ids.values())).dim()
    shape = next(iter(ids.values())).shape

    def varies(t: torch.Tensor, j: int) -> bool:
        return bool((t != t.narrow(j, 0, 1)).any())

    along = {n: [j for j in range(ndim) if varies(t, j)] for n, t in ids.items()}
    out: list[str | None] = []
    for j in range(ndim):
        atoms = [n for n, js in along.items() if js == [j]]
        if [n for n, js in along.items() if j in js] != atoms or not atoms:
            out.append(None)
            continue
        pos = torch.arange(shape[j]).view([-1 if k == j else 1 for k in range(ndim)]).expand(shape)
        found = None
        import itertools
        for order in itertools.permutations(atoms):
            flat = torch.zeros_like(pos)
            for n in order:
                flat = flat * SIZES[n] + ids[n]
            if torch.equal(flat, pos):
                found = "*".join(order)
                break
        out.append(found)
    return out


def scrambles(new: dict[str, torch.Tensor], named: set[str] | None = None) -> bool:
    """A reshape scrambles when some result axis mixes two atoms, one of them named, and a named one of them varies
    along another axis (an unnamed dim, here one whose name a cat of copies dropped, still holds data)."""
    if not new:
        return False
    named = set(new) if named is None else named
    t0 = next(iter(new.values()))
    ndim = t0.dim()
    along = {n: {j for j in range(ndim) if bool((t != t.narrow(j, 0, 1)).any())} for n, t in new.items()}
    for j in range(ndim):
        here = [n for n, js in along.items() if j in js]
        if len(here) > 1 and any(n in named and len(along[n]) > 1 for n in here):
            return True
    return False


@st.composite
def chains(draw: st.DrawFn) -> list[tuple]:
    steps = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["transpose", "permute", "view", "view_bad", "flatten", "cat", "stack"]))
        steps.append((kind, draw(st.randoms(use_true_random=False))))
    return steps


def _regroup(sizes: list[int], rnd) -> list[int]:
    out, cur = [], 1
    for s in sizes:
        cur *= s
        if rnd.random() < 0.5:
            out.append(cur)
            cur = 1
    if cur != 1 or not out:
        out.append(cur)
    return out


@settings(max_examples=150, deadline=None)
@given(chains())
def test_op_rules_match_index_bookkeeping(steps: list[tuple]) -> None:
    names = ["T", "bs", "emb", "h"]
    x = torch.zeros([SIZES[n] for n in names])
    ids = {n: torch.arange(SIZES[n]).view([-1 if k == i else 1 for k in range(4)]).expand(x.shape).clone()
           for i, n in enumerate(names)}
    info = TensorInfo(tuple(x.shape), tuple(names))
    namer = Namer(dict(SIZES), {})
    copies: dict[str, torch.Tensor] = {}
    for kind, rnd in steps:
        nd = x.dim()
        shape = tuple(x.shape)
        if kind == "transpose":
            a, b = rnd.randrange(nd), rnd.randrange(nd)
            fn, args = (lambda t, a=a, b=b: t.transpose(a, b)), ("transpose", (None, a, b))
        elif kind == "permute":
            order = list(range(nd))
            rnd.shuffle(order)
            fn, args = (lambda t, o=order: t.permute(o)), ("permute", (None, *order))
        elif kind in ("view", "view_bad", "flatten"):
            sizes = [s for s in shape if s > 1]
            if kind == "view_bad":
                rnd.shuffle(sizes)
            target = tuple(_regroup(sizes, rnd)) if kind != "flatten" else (-1,)
            fn, args = (lambda t, s=target: t.reshape(s)), ("reshape", (None, *target))
        else:  # cat / stack of 11 copies along a dim: 11 is no name's size
            d = rnd.randrange(nd + (kind == "stack"))
            fn = (lambda t, d=d, k=kind: getattr(torch, k)([t] * 11, dim=d))  # noqa: E731
            args = (kind, ([None], d))
        y = fn(x)
        new = {n: fn(t) for n, t in ids.items()}
        copies = {n: fn(t) for n, t in copies.items()}
        if kind in ("cat", "stack"):  # which copy each element is: data an unnamed dim holds
            copies[f"copy{len(copies)}"] = getattr(torch, kind)([torch.full_like(x, i, dtype=torch.long)
                                                                 for i in range(11)], dim=d)
        rule = op_rule(args[0], args[1], {})
        assert rule is not None
        got = rule(OpView([info if kind not in ("cat", "stack") else TensorInfo(info.shape, info.names, repeat=11)],
                          tuple(y.shape), namer))
        if args[0] == "reshape":
            flagged = bool(view_names(shape, evidence(info.names), tuple(y.shape), namer.size_of)[1])
            named = {p for n in info.names for p in n.split("*") if n}  # only named dims can be relabelled
            assert flagged == scrambles({**new, **copies}, named), \
                (shape, info.names, tuple(y.shape))
            if flagged:
                return  # names are gone from here on: later ops have nothing to check
        expected = truth_names(new)
        assert [g or None for g in got] == expected, (kind, info.names, shape, tuple(y.shape))
        x, ids = y, new
        info = TensorInfo(tuple(y.shape), tuple(g or "" for g in got))


def test_clean_reshapes_are_not_flagged_and_name_in_real_order() -> None:
    size_of = {"T": 7, "bs": 4, "emb": 8}.get
    assert view_names((7, 4, 8), ["T", "bs", "emb"], (28, 8), size_of) == (["T*bs", "emb"], [])
    assert view_names((4, 7, 8), ["bs", "T", "emb"], (28, 8), size_of) == (["bs*T", "emb"], [])
    assert view_names((28, 8), ["bs*T", "emb"], (4, 7, 8), size_of) == (["bs", "T", "emb"], [])
    assert view_names((28, 8), ["bs*T", "emb"], (7, 4, 8), size_of)[1] == ["bs", "T"]  # split in the wrong order
    assert view_names((4, 7, 8), ["bs", "T", "emb"], (4, 7, 2, 4), size_of) == (["bs", "T", None, None], [])


# ------------------------------------------------------------------ coincidences are guesses
class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 64)
        self.head = nn.Linear(64, 5)  # 5 classes, and T=5: a coincidence

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)
        return self.head(y)


def test_a_size_coincidence_is_a_guess_everywhere() -> None:
    t = sv.trace(Classifier(), torch.zeros(5, 2, 4))
    head = t.find(path="head")[0]
    assert head.outputs[0].names == ("T", "bs", "T?")
    assert head.outputs[0].format() == "(T=5, bs=2, T?=5)"
    assert head.outputs[0].origins[2] == "size (guess)"
    assert "T?=5" in t.table()
    back = Trace.from_json(t.to_json())
    assert back == t and back.find(path="head")[0].outputs[0].origins == head.outputs[0].origins


def test_size_one_is_never_named_by_size() -> None:
    with sv.dims(bs=1):
        t = sv.trace(nn.Linear(3, 4), torch.zeros(1, 1, 3))
    assert t.calls[0].inputs[0].names is None


def test_inputs_dims_beats_sizes() -> None:  # (bs=100, T|emb=28, T|emb=28) before
    class Rows(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.RNN(28, 8, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x)[0]

    t = sv.trace(Rows(), torch.zeros(100, 28, 28), inputs_dims="bs T emb")
    root = t.calls[0].inputs[0]
    assert root.names == ("bs", "T", "emb") and root.origins == ("inputs_dims",) * 3


def test_scrambled_view_is_unnamed_and_recorded() -> None:
    def f(e: torch.Tensor) -> torch.Tensor:
        return e.view(7, 4, -1)

    t = sv.trace(f, torch.zeros(4, 7, 8), ops=True, inputs_dims="bs T emb")
    (view,) = t.find(type="view")
    assert view.outputs[0].names is None or not any(n and not n.endswith("?") for n in view.outputs[0].names[:2])
    assert view.flag.startswith("scrambled_view: view(7, 4, -1) of e (bs, T, emb) relabels bs, T")
    assert json.loads(t.to_json())["calls"][1]["flag"] == view.flag


def test_json_reads_files_without_origins_and_checks_them() -> None:
    doc = {"schema": "shapeviz.trace/1", "sizes": {}, "calls": [
        {"index": 0, "path": "", "type": "f", "kind": "module",
         "inputs": [{"shape": [2, 3], "names": ["bs", ""]}]}]}
    assert Trace.from_json(json.dumps(doc)).calls[0].inputs[0].origins is None
    doc["calls"][0]["inputs"][0]["origins"] = ["x"]
    with pytest.raises(sv.SpecError, match=r"inputs\[0\]\.origins: expected null or a list of 2 strings"):
        Trace.from_json(json.dumps(doc))


# ------------------------------------------------------------------ sv.name
def test_name_names_a_tensor_in_traces_and_keeps_it_weakly() -> None:
    y = sv.name(torch.zeros(2, 5), "bs T")
    assert declared_names(y) == ("bs", "T")
    t = sv.trace(lambda v: v * 2, y, ops=True)
    assert t.calls[0].inputs[0].names == ("bs", "T") and t.calls[0].inputs[0].origins == ("sv.name", "sv.name")
    ref = __import__("weakref").ref(y)
    del y, t
    gc.collect()
    assert ref() is None
    from shapeviz.tracing import naming
    assert all(r() is not None for r, _ in naming._DECLARED.values())


def test_name_is_thread_safe_and_checked() -> None:
    kept: list[torch.Tensor] = []

    def work(i: int) -> None:
        for _ in range(200):
            t = sv.name(torch.zeros(i + 1, 3), "bs emb")
            assert declared_names(t) == ("bs", "emb")
        kept.append(t)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(kept) == 6 and all(declared_names(t) == ("bs", "emb") for t in kept)
    with pytest.raises(sv.SpecError, match="2 names for a tensor of 3 dims"):
        sv.name(torch.zeros(1, 2, 3), "bs T")
    with pytest.raises(sv.SpecError, match=r"expected a torch\.Tensor"):
        sv.name([1, 2], "bs")


def test_a_module_output_shaped_like_its_input_is_only_a_guess() -> None:
    """A black-box module whose result has its input's shape proves nothing about names;
    Linear keeps the leading dims (it acts on the last), Embedding keeps the index dims."""

    class Scores(nn.Module):  # (T, bs, 4) -> (T, bs, 4): hidden states, not the input's emb
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.RNNCell(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.zeros(x.shape[1], 4)
            out = []
            for x_t in x:
                h = self.cell(x_t, h)
                out.append(h)
            return torch.stack(out)

    t = sv.trace(Scores(), torch.zeros(5, 1, 4), inputs_dims="T bs emb")
    [top] = [c for c in t.calls if c.path == ""]
    assert top.outputs[0].names == ("T?", "bs?", "emb|h?")  # emb and h are both 4: a guess names both
    assert all(o == "size (guess)" for o in top.outputs[0].origins or ())
    head = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4))
    t2 = sv.trace(head, torch.zeros(3, 7, dtype=torch.long), inputs_dims="bs T")
    emb, lin = (c for c in t2.calls if c.path in ("0", "1"))
    assert emb.outputs[0].names[:2] == ("bs", "T")
    assert lin.outputs[0].names[:2] == ("bs", "T") and lin.outputs[0].names[2] in ("", "emb?")


def test_reductions_and_unbind_keep_the_names_of_the_dims_they_keep() -> None:
    """The reviewer's case: bs = T = h = 16, so only the op's dim argument can tell which dims stay."""

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.g = nn.GRU(8, 16, batch_first=True)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out, _ = self.g(x)  # (bs, T, D*h), all 16
            return out.mean(1), out.sum(dim=1, keepdim=True), out.amax(0), out.unbind(1)[0]

    t = sv.trace(M(), torch.zeros(16, 16, 8), ops=True)
    got = {c.type: c.outputs[0].names for c in t.calls if c.kind == "op"}
    assert got["mean"] == ("bs", "D*h") and got["sum"] == ("bs", "", "D*h") and got["amax"] == ("T", "D*h")
    assert got["unbind"] == ("bs", "D*h")


def test_a_matrix_vector_product_keeps_the_matrixs_leading_names() -> None:
    """Attention scores ``out @ q`` of a query vector: ``(bs, T, D*h) @ (D*h,)`` -> ``(bs, T)``, as torch computes;
    ``q @ out.transpose(1, 2)`` -> ``(bs, T)`` too (bs = T = h = 6: only the rule can tell)."""

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.g, self.q = nn.GRU(8, 6, batch_first=True), nn.Parameter(torch.randn(6))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out, _ = self.g(x)
            return out @ self.q, self.q @ out.transpose(1, 2)

    t = sv.trace(M(), torch.zeros(6, 6, 8), ops=True, inputs_dims="bs T emb")
    got = [c for c in t.calls if c.type == "matmul"]
    assert [c.outputs[0].shape for c in got] == [(6, 6), (6, 6)]
    assert [c.outputs[0].names for c in got] == [("bs", "T"), ("bs", "T")]


def test_a_slice_relative_to_both_ends_is_named_by_what_it_drops() -> None:
    """``x[:, 1:]`` and ``x[:, :-1]`` are T-1 steps whatever T: named ``T-1`` (``x[:, 1:-1]`` T-2); a slice of a
    fixed length (``x[:, :3]``: 3 steps whatever T) or with a step is no longer T and stays unnamed."""

    def f(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return x[:, 1:], x[:, :-1], x[:, 1:-1][:, :-1], x[:, :3], x[:, ::2], x[:, -3:]

    t = sv.trace(f, torch.zeros(4, 7, 8), ops=True, inputs_dims="bs T emb")
    got = [c.outputs[0].names for c in t.calls if c.kind == "op"]
    assert got[:4] == [("bs", "T-1", "emb")] * 2 + [("bs", "T-2", "emb")] + [("bs", "T-3", "emb")]
    assert [g[1] for g in got[4:]] == ["", "bs?", ""], got  # 4 steps of 7 match bs by size alone: a guess


def test_names_given_by_inputs_dims_stay_when_the_input_goes_straight_into_a_layer() -> None:
    """A rollout ``(S, n, obs)`` named by ``inputs_dims`` and given to a seq-first GRU as it is: its time and
    batch stay ``S`` and ``n`` in the layer's row (they were read as the layer's ``T``/``bs``), as they do once an
    op or a module has touched the tensor; the feature dim is the layer's ``emb``."""
    t = sv.trace(nn.GRU(4, 7), torch.randn(5, 3, 4), ops=True, inputs_dims="S n obs")
    (gru,) = t.find(type="GRU")
    assert gru.inputs[0].names == ("S", "n", "emb")
    assert gru.outputs[0].names == ("S", "n", "D*h") and gru.outputs[1].names == ("layers*D", "n", "h")


def test_a_flattened_size_is_not_guessed_at_its_next_use_either() -> None:
    """``(bs, 8, V).reshape(-1, V)`` is ``(32, V)`` unnamed (a size cannot tell bs*8 from 8*bs), and stays unnamed
    where the loss reads it, though 32 is the GRU's h (it read ``h?=32`` there)."""

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.out = nn.GRU(16, 32, batch_first=True), nn.Linear(32, 50)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            lg = self.out(self.rnn(x)[0][:, -1:].expand(-1, 8, -1))  # (bs, 8, V)
            return F.cross_entropy(lg.reshape(-1, 50), y.reshape(-1))

    t = sv.trace(M(), torch.randn(4, 7, 16), torch.randint(0, 50, (4, 8)), ops=True, inputs_dims="bs T")
    (loss,) = t.find(type="cross_entropy")
    flat = next(c for c in t.calls if c.type == "reshape").outputs[0]
    assert flat.shape == (32, 50) and not (flat.names or ("",))[0]
    assert [i.format() for i in loss.inputs[:2]] == ["(32, 50)", "(32,)"]


def test_a_cat_of_equal_shaped_operands_made_differently_keeps_each_ones_names() -> None:
    """``cat((h, ctx))`` of a cell's state ``(bs, h)`` and a pooled context ``(bs, d)`` of the same shape is two
    records (it read ``h 2 × (bs, h)``, calling ctx h); the T outputs of a cell loop stay one ``5 ×`` record."""

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.GRUCell(16, 16)

        def forward(self, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.cell(regions.mean(1))
            steps = [h := self.cell(regions[:, t], h) for t in range(5)]
            return torch.cat((h, regions.max(1).values), -1), torch.stack(steps, 1)

    with sv.dims(d=16):
        t = sv.trace(M(), torch.randn(3, 5, 16), ops=True, inputs_dims="bs R d")
    (cat,) = t.find(type="cat")
    assert [(i.repeat, i.names) for i in cat.inputs[:2]] == [(1, ("bs", "h")), (1, ("bs", "d"))]
    (stack,) = t.find(type="stack")
    assert stack.inputs[0].repeat == 5


def test_a_same_length_conv_keeps_its_spatial_names_and_a_strided_one_does_not() -> None:
    """A conv over ``(bs, 1, F, T)``: the batch stays, the channels are new, F and T keep their names where the
    conv leaves their length (stride 1, padding 1), and a stride of 2 along T makes it another length, unnamed.
    Pooling keeps its channels too."""

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.same, self.strided = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(1, 4, 3, padding=1, stride=(1, 2))
            self.pool = nn.MaxPool2d((2, 1))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            y = self.same(x)
            return F.conv2d(x, self.same.weight, padding=1), F.conv2d(x, self.strided.weight, padding=1,
                                                                      stride=(1, 2)), F.max_pool2d(y, (1, 2))

    t = sv.trace(M(), torch.randn(2, 1, 8, 6), ops=True, inputs_dims="bs _ F T")
    got = [c.outputs[0].names for c in t.calls if c.kind in ("op", "module") and c.depth > 0]
    assert got == [("bs", "", "F", "T"),  # the module
                   ("bs", "", "F", "T"), ("bs", "", "F", ""), ("bs", "", "F", "")], got  # conv, strided, pool


def test_a_run_of_tensors_made_alike_claims_only_the_names_all_of_them_have() -> None:
    """``cat([o[:, -1], hn[-1]])`` (both made by indexing, one line) is one ``2 ×`` record: it names only what both
    are, ``bs`` (the features are ``D*h`` in one and ``h`` in the other); ``stack([o.sum(1), o.sum(0)])`` with
    bs == T names neither dim of the pieces (``bs`` in one, ``T`` in the other)."""

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(8, 16, num_layers=3, batch_first=True)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            o, hn = self.rnn(x)
            return torch.cat([o[:, -1], hn[-1]], 1), torch.stack([o.sum(1), o.sum(0)])

    t = sv.trace(M(), torch.randn(3, 3, 8), ops=True, inputs_dims="bs T")
    (cat,), (stack,) = t.find(type="cat"), t.find(type="stack")
    assert (cat.inputs[0].repeat, cat.inputs[0].names) == (2, ("bs", ""))
    assert (stack.inputs[0].repeat, stack.inputs[0].names) == (2, ("", "D*h"))


class NamesItsInput(nn.Module):
    """Names its own input ``(bs, S, emb)`` with ``sv.name`` inside ``forward``, then a batch-first GRU reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 6, batch_first=True)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.gru(sv.name(y, "bs S emb"))[0]


def test_a_model_input_named_inside_forward_keeps_the_users_names() -> None:
    """The model's row records ``y`` before ``sv.name`` runs: the names given later are still a declaration of
    that very tensor (the user's ``S``); the layer reading it keeps them for its time axis, and so do its
    results and the layers after it (the layer's ``T`` is the user's ``S``)."""
    t = sv.trace(NamesItsInput(), torch.randn(4, 5, 8))
    model, gru = t.calls
    assert model.inputs[0].names == ("bs", "S", "emb") and model.inputs[0].origins[1] == "sv.name", model.inputs[0]
    assert gru.inputs[0].names == ("bs", "S", "emb"), gru.inputs[0]
    assert [o.names for o in gru.outputs] == [("bs", "S", "D*h"), ("layers*D", "bs", "h")]
    plain = sv.trace(NamesItsInput().gru, torch.randn(4, 5, 8))  # unnamed: the layer's conventions alone
    assert plain.calls[0].inputs[0].names == ("bs", "T", "emb")
    assert plain.calls[0].outputs[0].names == ("bs", "T", "D*h")


class Dialogue(nn.Module):
    """Dialogues ``(bs, U, W)`` of token ids: an utterance GRU over the ``bs*U`` utterances, its last state split
    back into ``(bs, U, h)`` and a seq-first context GRU over the utterances."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.utt, self.ctx = nn.Embedding(50, 8), nn.GRU(8, 12, batch_first=True), nn.GRU(12, 10)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        bs, U, W = d.shape
        _, h = self.utt(self.emb(d.view(bs * U, W)))
        return self.ctx(h[-1].view(bs, U, -1).transpose(0, 1))[0]


def test_a_layer_over_a_merged_batch_names_its_results_by_its_inputs_dims() -> None:
    """The utterance GRU's batch is ``bs*U`` and its time ``W`` by provenance: its output and h_n carry those
    names (not an unnamed 12), so the split of h_n is named ``(bs, U, h)`` with evidence, not guessed."""
    t = sv.trace(Dialogue(), torch.randint(0, 50, (3, 4, 6)), ops=True, inputs_dims="bs U W")
    utt = t.find(path="utt")[0]
    assert [o.names for o in utt.outputs] == [("bs*U", "W", "D*h"), ("layers*D", "bs*U", "h")], utt.outputs
    split = t.find(type="view")[-1]
    assert split.outputs[0].names == ("bs", "U", "h"), split.outputs[0]
    assert t.find(path="ctx")[0].outputs[0].names == ("U", "bs", "D*h")
