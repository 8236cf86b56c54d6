"""@check: same verdicts as jaxtyping where both can speak, more where only shapeviz can."""

from __future__ import annotations

import random
import threading
from typing import Any, Optional

import pytest
import torch
import torch.nn as nn
from beartype import beartype
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jaxtyping import AnnotationError, Bool, Float, Float64, Int, Shaped, jaxtyped
from torch import Tensor

import shapeviz as sv
from shapeviz.annotations.aliases import (
    Hidden,
    HiddenProj,
    Logits,
    Output,
    OutputBatchFirst,
    OutputProj,
    Seq,
    SeqBatchFirst,
    Step,
    StepHidden,
    Tokens,
    check,
    module_sizes,
)
from shapeviz.core.model import Conventions

# ------------------------------------------------------------------ differential test vs jaxtyping

FAMILIES = {"Float": Float, "Int": Int, "Shaped": Shaped, "Bool": Bool}
DTYPES = [torch.float32, torch.float64, torch.int64, torch.int32, torch.bool]
NAMES = ["a", "b", "c"]


def _make_fn(n: int, box: list[Any]) -> Any:
    if n == 1:
        def f(x0: Any) -> Any:
            return box[0]
    elif n == 2:
        def f(x0: Any, x1: Any) -> Any:  # type: ignore[misc]
            return box[0]
    else:
        def f(x0: Any, x1: Any, x2: Any) -> Any:  # type: ignore[misc]
            return box[0]
    return f


def dim_tokens(rng: random.Random, allow_symbolic: bool) -> list[str]:
    """A jaxtyping dim string (as tokens) over a small pool so that names collide often."""
    pool = [*NAMES, "#a", "#b", "2", "3", "_", "1"]
    if allow_symbolic:
        pool += ["a*b", "a+1", "2*c", "b-1"]
    toks = [rng.choice(pool) for _ in range(rng.randint(0, 3))]
    if rng.randint(0, 4) == 0:
        toks.insert(rng.randint(0, len(toks)), rng.choice(["*batch", "*#batch", "..."]))
    return toks


SYMBOLIC = {"a*b": lambda t: t["a"] * t["b"], "a+1": lambda t: t["a"] + 1, "2*c": lambda t: 2 * t["c"],
            "b-1": lambda t: t["b"] - 1}


def shape_for(rng: random.Random, toks: list[str], truth: dict[str, Any]) -> tuple[int, ...]:
    """A shape that fits ``toks`` under ``truth``, sometimes perturbed to a near miss."""
    out: list[int] = []
    for t in toks:
        name = t.lstrip("#*")
        if t in ("*batch", "*#batch"):
            out.extend(truth["batch"])
        elif t == "...":
            out.extend(rng.randint(1, 3) for _ in range(rng.randint(0, 2)))
        elif t == "_":
            out.append(rng.randint(1, 4))
        elif t.isdigit():
            out.append(int(t))
        elif name in truth:
            out.append(1 if t.startswith("#") and rng.random() < 0.5 else truth[name])
        else:
            out.append(SYMBOLIC[t](truth))
    if out and rng.randint(0, 3) == 0:
        out[rng.randrange(len(out))] = rng.randint(1, 4)
    if rng.randint(0, 12) == 0:
        out.append(2)  # wrong rank
    return tuple(out)


def make_case(seed: int) -> tuple[Any, ...]:
    """Annotations (arrays, Optional, tuples; symbolic dims only in the return, where jaxtyping
    can evaluate them), values that mostly fit, and a return value."""
    rng = random.Random(seed)
    truth: dict[str, Any] = {n: rng.randint(1, 4) for n in NAMES}
    truth["batch"] = tuple(rng.randint(1, 3) for _ in range(rng.randint(0, 2)))
    anns, values = [], []
    for _ in range(rng.randint(1, 3)):
        toks = dim_tokens(rng, allow_symbolic=False)
        ann: Any = FAMILIES[rng.choice(list(FAMILIES))][Tensor, " ".join(toks)]
        value: Any = torch.zeros(shape_for(rng, toks, truth), dtype=rng.choice(DTYPES))
        form = rng.randint(0, 5)
        if form == 0:
            ann = Optional[ann]  # noqa: UP045 -- the typing form, on purpose
            if rng.random() < 0.5:
                value = None
        elif form == 1:
            toks2 = dim_tokens(rng, allow_symbolic=False)
            ann = tuple[ann, Float[Tensor, " ".join(toks2)]]
            value = (value, torch.zeros(shape_for(rng, toks2, truth)))
        anns.append(ann)
        values.append(value)
    ret_ann, ret_value = None, None
    if rng.random() < 0.5:
        toks = dim_tokens(rng, allow_symbolic=True)
        ret_ann = Float[Tensor, " ".join(toks)]
        ret_value = torch.zeros(shape_for(rng, toks, truth))
    return anns, values, ret_ann, ret_value


def _verdict_jaxtyping(fn: Any, values: list[Any]) -> bool | None:
    try:
        jaxtyped(typechecker=beartype)(fn)(*values)
    except AnnotationError:
        return None  # jaxtyping cannot evaluate this annotation (e.g. a symbolic dim it cannot bind)
    except Exception as e:  # beartype's violation types
        if "AnnotationError" in type(e).__name__:
            return None
        return False
    return True


def _verdict_shapeviz(fn: Any, values: list[Any]) -> bool:
    try:
        check(fn)(*values)
    except sv.ShapeError:
        return False
    return True


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_same_verdicts_as_jaxtyping(seed: int) -> None:
    """1000 random cases; a failure prints the seed, and make_case(seed) rebuilds the case."""
    anns, values, ret_ann, ret_value = make_case(seed)
    box = [ret_value]
    fn = _make_fn(len(anns), box)
    fn.__annotations__ = {f"x{i}": a for i, a in enumerate(anns)}
    if ret_ann is not None:
        fn.__annotations__["return"] = ret_ann
    expected = _verdict_jaxtyping(fn, values)
    assume(expected is not None)
    assert _verdict_shapeviz(fn, values) == expected


def test_differential_cases_reach_both_verdicts() -> None:
    """The generator is not one-sided: over 100 seeds jaxtyping both accepts and rejects often."""
    verdicts = []
    for seed in range(100):
        anns, values, ret_ann, ret_value = make_case(seed)
        fn = _make_fn(len(anns), [ret_value])
        fn.__annotations__ = {f"x{i}": a for i, a in enumerate(anns)} | (
            {"return": ret_ann} if ret_ann is not None else {})
        verdicts.append(_verdict_jaxtyping(fn, values))
    assert verdicts.count(True) > 20 and verdicts.count(False) > 20


# ------------------------------------------------------------------ what only shapeviz handles

LayersD = Float[Tensor, "layers D"]


def test_symbolic_dims_on_arguments_whatever_the_order() -> None:
    @check
    def f(h: Hidden, x: Seq, cfg: LayersD) -> Hidden:
        return h

    x, cfg = torch.zeros(5, 3, 10), torch.zeros(2, 2)
    assert f(torch.zeros(4, 3, 20), x, cfg).shape == (4, 3, 20)  # layers*D=4 from cfg, bound after h
    with pytest.raises(sv.ShapeError, match=r"argument `h`[\s\S]*dim 0 \(layers\*D\) is 3, which"):
        f(torch.zeros(3, 3, 20), x, cfg)

    def g(h: Hidden, cfg: LayersD) -> Hidden:
        return h

    g.__annotations__ = {"h": Hidden, "cfg": LayersD}
    with pytest.raises(AnnotationError):  # what jaxtyping says about the same function
        jaxtyped(typechecker=beartype)(g)(torch.zeros(4, 3, 20), cfg)
    assert check(g)(torch.zeros(4, 3, 20), cfg).shape == (4, 3, 20)


def test_symbolic_dim_solved_from_one_known_factor() -> None:
    @check
    def f(out: Output, h: StepHidden) -> Output:  # D*h with h known from the second argument
        return out

    assert f(torch.zeros(5, 3, 40), torch.zeros(3, 20)).shape == (5, 3, 40)  # D=2
    with pytest.raises(sv.ShapeError, match=r"dim 2 \(D\*h\) is 30, which does not fit h=20"):
        f(torch.zeros(5, 3, 30), torch.zeros(3, 20))  # 30 is not a multiple of 20


def test_unsolvable_symbolic_dims_must_agree_between_arguments() -> None:
    @check
    def f(h: Hidden, c: Hidden) -> None:
        return None

    f(torch.zeros(4, 3, 20), torch.zeros(4, 3, 20))
    with pytest.raises(sv.ShapeError, match=r"dim 0 \(layers\*D\) is 2 here but 4 in `h`"):
        f(torch.zeros(4, 3, 20), torch.zeros(2, 3, 20))


def test_logits_and_tokens() -> None:
    @check
    def head(tokens: Tokens, logits: Logits) -> Logits:
        return logits

    tokens = torch.zeros(2, 5, dtype=torch.long)  # (bs=2, T=5)
    assert head(tokens, torch.zeros(10, 28)).shape == (10, 28)
    with pytest.raises(sv.ShapeError, match=r"argument `logits`[\s\S]*dim 0 \(T\*bs\) is 9, which"):
        head(tokens, torch.zeros(9, 28))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(10, 20, num_layers=2, bidirectional=True)

    @check
    def forward(self, x: Seq, h0: Hidden) -> Output:
        return self.rnn(x, h0)[0]


class OwnLoop(nn.Module):
    """A hand-written RNN with the usual attributes (and no nn.RNN inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers, self.bidirectional = 4, 6, 3, False

    @check
    def forward(self, x: Seq, h0: Hidden) -> Hidden:
        return h0


class CheckedGRU(nn.GRU):
    @check
    def forward(self, x: Seq, hx: Hidden) -> tuple[Output, Hidden]:  # type: ignore[override]
        return super().forward(x, hx)


def test_module_config_binds_dims() -> None:
    enc = Encoder()
    x = torch.randn(5, 3, 10)
    assert enc(x, torch.zeros(4, 3, 20)).shape == (5, 3, 40)

    own = OwnLoop()
    assert own(torch.zeros(5, 2, 4), torch.zeros(3, 2, 6)).shape == (3, 2, 6)
    with pytest.raises(sv.ShapeError, match=r"argument `h0`[\s\S]*dim 0 \(layers\*D\) is 2, which does not fit "
                                             r"layers=3 \(the module's config \(OwnLoop\)\)"):
        own(torch.zeros(5, 2, 4), torch.zeros(2, 2, 6))
    with pytest.raises(sv.ShapeError, match=r"argument `x`[\s\S]*dim 2 \(emb\) is 5, but emb=4 was bound by "
                                            r"the module's config"):
        own(torch.zeros(5, 2, 5), torch.zeros(3, 2, 6))

    gru = CheckedGRU(10, 20, num_layers=2)  # a recurrent module: conventions(self).sizes
    assert gru(x, torch.zeros(2, 3, 20))[1].shape == (2, 3, 20)
    with pytest.raises(sv.ShapeError, match=r"argument `hx`[\s\S]*GRU\(10, 20, num_layers=2\)"):
        gru(x, torch.zeros(1, 3, 20))


def test_module_sizes_read_through_conventions() -> None:
    assert module_sizes(nn.LSTM(3, 5, proj_size=2)) == {"emb": 3, "h": 5, "layers": 1, "D": 1, "proj": 2}
    assert module_sizes(OwnLoop()) == {"emb": 4, "h": 6, "layers": 3, "D": 1}
    assert module_sizes(nn.Linear(2, 3)) is None


def test_declared_sizes_bind_dims() -> None:
    @check
    def step(x: Step, h: StepHidden) -> StepHidden:
        return h

    x, h = torch.zeros(3, 10), torch.zeros(3, 20)
    with sv.dims(bs=3, h=20):
        assert step(x, h).shape == (3, 20)
    with sv.dims(bs=4), pytest.raises(sv.ShapeError, match=r"argument `x`[\s\S]*bs=4 was bound by sv.dims"):
        step(x, h)
    assert step(x, h).shape == (3, 20)  # nothing declared any more


# ------------------------------------------------------------------ messages


def test_swapped_layout_points_at_the_input_not_at_h() -> None:
    @check
    def encode(x: Seq, h: Hidden) -> Output:
        return torch.zeros(x.shape[0], x.shape[1], 40)

    x_batch_first = torch.zeros(3, 5, 10)  # (bs=3, T=5, emb=10) given to a seq-first annotation
    with pytest.raises(sv.ShapeError) as info:
        encode(x_batch_first, torch.zeros(4, 3, 20))
    err = info.value
    assert err.code == "batch_first_swap" and err.argument == "x"
    msg = str(err)
    assert "argument `x`" in msg and "argument `h`" not in msg
    assert "x.transpose(0, 1)" in msg
    assert "bindings: T=3 (`x` dim 0), bs=5 (`x` dim 1)" in msg


def test_jaxtyping_blames_h_for_the_same_mistake() -> None:
    def encode(x: Seq, h: Hidden) -> None:
        return None

    encode.__annotations__ = {"x": Seq, "h": Float[Tensor, "L bs h"], "return": None}
    with pytest.raises(Exception, match=r"parameter 'h'"):
        jaxtyped(typechecker=beartype)(encode)(torch.zeros(3, 5, 10), torch.zeros(4, 3, 20))


def test_swap_with_declared_sizes_blames_the_swapped_argument_itself() -> None:
    @check
    def encode(x: SeqBatchFirst, h: Hidden) -> None:
        return None

    with sv.dims(T=5), pytest.raises(sv.ShapeError, match=r"\[batch_first_swap\][\s\S]*argument `x`"):
        encode(torch.zeros(5, 3, 10), torch.zeros(1, 3, 20))


def test_message_sections() -> None:
    @check
    def step(x: Step, h: StepHidden) -> StepHidden:
        return h

    with pytest.raises(sv.ShapeError) as info:
        step(torch.zeros(3, 10), torch.zeros(4, 20))
    msg = str(info.value)
    assert msg.startswith("[annotation] @check test_message_sections.<locals>.step: argument `h`")
    assert "dim 0 (bs) is 4, but bs=3 was bound by `x` dim 0" in msg
    assert "expected: Float[Tensor, 'bs h'] = (bs=3, h)" in msg
    assert "actual:   (4, 20)" in msg
    assert "bindings: bs=3 (`x` dim 0), emb=10 (`x` dim 1)" in msg
    assert "\nhint: `x` and `h` disagree on bs" in msg


@pytest.mark.parametrize(("value", "fragment"), [
    (torch.zeros(3, 10, dtype=torch.long), r"dtype int64 is not a Float dtype"),
    (torch.zeros(3, 10, 1), r"expected 2 dims, received a 3-dim tensor"),
    ([1, 2], r"expected a Tensor, got list"),
])
def test_type_dtype_and_rank_messages(value: Any, fragment: str) -> None:
    @check
    def step(x: Step) -> None:
        return None

    with pytest.raises(sv.ShapeError, match=fragment):
        step(value)


def test_return_value_is_checked_with_the_arguments_bindings() -> None:
    @check
    def bad(x: Seq) -> OutputBatchFirst:
        return x  # (T, bs, ·) returned where (bs, T, ·) is promised

    with pytest.raises(sv.ShapeError, match=r"argument `return value`[\s\S]*dim 0 \(bs\) is 5, but bs=3"):
        bad(torch.zeros(5, 3, 8))


def test_tuple_optional_variadic_broadcast_and_kwargs() -> None:
    @check
    def f(xs: tuple[Float[Tensor, "*batch n"], Float[Tensor, "#n"]], mask: Optional[Bool[Tensor, "*batch"]] = None,  # noqa: UP045
          *, scale: float = 1.0) -> Float[Tensor, "... n"]:
        return xs[0]

    a = torch.zeros(2, 3, 4)
    assert f((a, torch.zeros(1))).shape == (2, 3, 4)
    assert f((a, torch.zeros(4)), mask=torch.zeros(2, 3, dtype=torch.bool), scale=2.0).shape == (2, 3, 4)
    with pytest.raises(sv.ShapeError, match=r"argument `mask`[\s\S]*dims \*batch is \(2, 4\)"):
        f((a, torch.zeros(4)), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(sv.ShapeError, match=r"argument `xs\[1\]`"):
        f((a, torch.zeros(3)))


def test_bindings_do_not_leak_between_calls() -> None:
    @check
    def step(x: Step, h: StepHidden) -> StepHidden:
        return h

    for bs in (1, 2, 7, 2):
        assert step(torch.zeros(bs, 3), torch.zeros(bs, 5)).shape == (bs, 5)


def test_shapeviz_disable_is_read_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    @check
    def step(x: Step, h: StepHidden) -> StepHidden:
        return h

    x, wrong_h = torch.zeros(3, 10), torch.zeros(4, 20)  # bs=3 vs bs=4
    with pytest.raises(sv.ShapeError, match=r"argument `h`"):
        step(x, wrong_h)
    monkeypatch.setenv("SHAPEVIZ_DISABLE", "1")
    assert step(x, wrong_h) is wrong_h  # no check: the function runs as written
    monkeypatch.setenv("SHAPEVIZ_DISABLE", "0")
    with pytest.raises(sv.ShapeError, match=r"argument `h`"):
        step(x, wrong_h)


def test_threads_do_not_cross_talk() -> None:
    @check
    def layer(x: Seq, h: Hidden, out: Output) -> Hidden:
        return h

    errors: list[BaseException] = []
    wrong: list[int] = []
    barrier = threading.Barrier(8)

    def worker(k: int) -> None:
        T, bs, L = k + 1, k + 2, (k % 3) + 1
        x, h, out = torch.zeros(T, bs, 3), torch.zeros(L, bs, 4), torch.zeros(T, bs, 4)
        bad_h = torch.zeros(L, bs + 1, 4)
        barrier.wait()
        try:
            for _ in range(300):
                assert layer(x, h, out) is h
                try:
                    layer(x, bad_h, out)
                except sv.ShapeError as e:
                    if f"bs={bs} was bound by `x`" not in str(e):
                        wrong.append(k)
                else:
                    wrong.append(k)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not wrong


# ------------------------------------------------------------------ annotations shapeviz refuses


@pytest.mark.parametrize(("ann", "fragment"), [
    (Float[Tensor, "n**2"], r"symbolic dim 'n\*\*2' is not understood"),
    (Float[Tensor, "min(a,b)"], r"never evaluates code"),
    (Float[Tensor, "?a"], r"tree-path dims"),
    (Float, r"Float needs an array type and dims"),
])
def test_bad_annotations_raise_spec_error(ann: Any, fragment: str) -> None:
    def f(x: Any) -> None:
        return None

    f.__annotations__ = {"x": ann}
    with pytest.raises(sv.SpecError, match=fragment):
        check(f)


def test_a_name_cannot_be_both_single_and_variadic() -> None:
    def f(x: Any, y: Any) -> None:
        return None

    f.__annotations__ = {"x": Float[Tensor, "*n"], "y": Float[Tensor, "n"]}
    with pytest.raises(sv.SpecError, match=r"'n' is used both as a single dim and as a variadic"):
        check(f)


def test_symbolic_dims_are_parsed_not_evaluated() -> None:
    def f(x: Any) -> None:
        return None

    f.__annotations__ = {"x": Float[Tensor, "x.__class__"]}
    with pytest.raises(sv.SpecError):
        check(f)


def test_forward_references_compile_on_first_call() -> None:
    def f(x: Later) -> Later:  # type: ignore[name-defined]  # noqa: F821
        return x

    checked = check(f)
    globals()["Later"] = Step
    try:
        assert checked(torch.zeros(2, 3)).shape == (2, 3)
        with pytest.raises(sv.ShapeError):
            checked(torch.zeros(2, 3, 4))
    finally:
        del globals()["Later"]


# ------------------------------------------------------------------ aliases


def test_aliases_are_the_conventions() -> None:
    c = Conventions("LSTM", cell=False, input_size=1, hidden_size=1)
    bf = Conventions("LSTM", cell=False, input_size=1, hidden_size=1, batch_first=True)
    proj = Conventions("LSTM", cell=False, input_size=1, hidden_size=2, proj_size=1)
    cell = Conventions("RNN", cell=True, input_size=1, hidden_size=1)
    assert Seq.dim_str == c.symbolic["input"] and SeqBatchFirst.dim_str == bf.symbolic["input"]
    assert Hidden.dim_str == c.symbolic["h_0"] == c.symbolic["c_0"]
    assert HiddenProj.dim_str == proj.symbolic["h_0"] and OutputProj.dim_str == proj.symbolic["output"]
    assert Output.dim_str == c.symbolic["output"] and OutputBatchFirst.dim_str == bf.symbolic["output"]
    assert Step.dim_str == cell.symbolic["input"] and StepHidden.dim_str == cell.symbolic["h_0"]
    assert (Tokens.dim_str, Logits.dim_str) == ("bs T", "T*bs vocab")


def test_aliases_work_with_jaxtyping_too() -> None:
    @jaxtyped(typechecker=beartype)
    def f(x: Seq, h: StepHidden) -> Float[Tensor, "bs h"]:
        return h

    assert f(torch.zeros(5, 3, 10), torch.zeros(3, 20)).shape == (3, 20)
    with pytest.raises(Exception, match="h"):
        f(torch.zeros(5, 3, 10), torch.zeros(4, 20))


# ------------------------------------------------------------------ torch.compile


class Loop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.RNNCell(10, 20)

    @check
    def step(self, x: Step, h: StepHidden) -> StepHidden:
        return self.cell(x, h)

    @check
    def forward(self, xs: Seq, h: StepHidden) -> Float[Tensor, "T bs h"]:
        ys = []
        for t in range(xs.shape[0]):
            h = self.step(xs[t], h)
            ys.append(h)
        return torch.stack(ys)


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_checked_loop_compiles_without_graph_breaks(backend: str) -> None:
    torch._dynamo.reset()
    model = Loop()
    xs, h = torch.randn(3, 2, 10), torch.zeros(2, 20)
    explanation = torch._dynamo.explain(model)(xs, h)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    assert torch.allclose(compiled(xs, h), model(xs, h), atol=1e-6)


def test_a_failing_check_under_compile_still_raises_shape_error() -> None:
    torch._dynamo.reset()
    compiled = torch.compile(Loop(), backend="eager")  # not fullgraph: the slow path runs eagerly
    with pytest.raises(sv.ShapeError, match=r"argument `h`"):
        compiled(torch.randn(3, 2, 10), torch.zeros(4, 20))


def test_module_sizes_follow_the_module_and_go_with_it() -> None:
    import gc

    from shapeviz.annotations import aliases

    class Loop(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.input_size, self.hidden_size = 10, 20

    m = Loop()
    assert aliases.module_sizes(m) == {"emb": 10, "h": 20}
    m.hidden_size = 32  # a changed setting is read again
    assert aliases.module_sizes(m) == {"emb": 10, "h": 32}
    mid = id(m)
    assert mid in aliases._module_cache
    del m
    gc.collect()
    assert mid not in aliases._module_cache  # the entry went with the module



def _ids(X: Int[torch.Tensor, "bs T"]) -> None: ...
def _floats(X: Float[torch.Tensor, "bs T"]) -> None: ...
def _doubles(X: Float64[torch.Tensor, "bs T"]) -> None: ...
def _masks(X: Bool[torch.Tensor, "bs T"]) -> None: ...


@pytest.mark.parametrize(("fn", "value", "conversion"), [
    (_ids, torch.rand(4, 7), "X.long()"),
    (_floats, torch.zeros(4, 7, dtype=torch.long), "X.float()"),
    (_doubles, torch.zeros(4, 7), "X.double()"),
    (_masks, torch.zeros(4, 7), "X.bool()"),
])
def test_a_dtype_hint_converts_to_the_annotated_dtype(fn: Any, value: torch.Tensor, conversion: str) -> None:
    """Token ids annotated Int but given floats: the hint converts to an Int dtype, not to float."""
    with pytest.raises(sv.ShapeError) as err:
        check(fn)(value)
    assert f"hint: convert it, e.g. {conversion}," in str(err.value)
