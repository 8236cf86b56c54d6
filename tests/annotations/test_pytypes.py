"""@check on non-array parameters and return values: beartype's verdicts, in a ShapeError.

This module's annotations are strings (``from __future__ import annotations``), as in most code.
"""

from __future__ import annotations

import enum
import numbers
import subprocess
import sys
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Literal, Optional, Self, Union

import pytest
import torch
import torch.nn as nn
from beartype import BeartypeConf, beartype
from beartype.door import is_bearable
from jaxtyping import Float, jaxtyped
from torch import Tensor

import shapeviz as sv
from shapeviz.annotations.aliases import Step, StepHidden, check
from shapeviz.annotations.codegen import make_checker
from shapeviz.annotations.explainer import explain_mismatch
from shapeviz.annotations.parser import NodeKind, Slots, parse_annotation
from shapeviz.annotations.signature import compile_signature

TOWER = BeartypeConf(is_pep484_tower=True)


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Config:
    def __init__(self, size: int) -> None:
        self.size = size


X, H = torch.zeros(3, 10), torch.zeros(3, 20)
Batch = Float[Tensor, "bs"]

# ------------------------------------------------------------------ the example


def test_a_wrong_non_array_argument_raises_shape_error_like_beartype_does() -> None:
    def f(x: Step, n: int, mode: str) -> Step:
        return x

    with pytest.raises(Exception, match=r"typechecking parameter 'n'"):  # what jaxtyping + beartype say
        jaxtyped(typechecker=beartype)(f)(X, "x", "tanh")
    checked = check(f)
    assert checked(X, 3, "tanh") is X
    with pytest.raises(sv.ShapeError) as info:
        checked(X, "x", "tanh")
    err = info.value
    assert (err.code, err.argument, err.expected, err.actual) == ("annotation", "n", "int", "str 'x'")
    assert str(err) == (
        "[annotation] @check test_a_wrong_non_array_argument_raises_shape_error_like_beartype_does.<locals>.f: "
        "argument `n`\n"
        "  str 'x' is not an instance of int\n"
        "  expected: int\n"
        "  actual:   str 'x'\n"
        "  bindings: bs=3 (`x` dim 0), emb=10 (`x` dim 1)\n"
        "hint: pass `n` a value of type int (got str), or widen the annotation if str is meant: int | str")


# ------------------------------------------------------------------ the same verdicts as beartype

HINTS: list[Any] = [
    int, float, complex, bool, str, bytes, list, tuple, dict, type(None), Tensor, nn.Module, Color, Config,
    numbers.Number, Sequence, Iterable, type, int | None, float | str, Optional[float], Union[int, str, None],  # noqa: UP007 UP045
    Literal["a", "b"], Literal[1, True], Literal[Color.RED], Literal["a", None], Optional[Literal["a"]],  # noqa: UP045
    Literal["a"] | int, list[int], dict[str, int], tuple[int, str], tuple[int, ...], set[str],
    Sequence[int], Iterable[str], type[nn.Module], Literal[b"x"], int | list[str],
]
VALUES: list[Any] = [
    0, 1, 2, 1.0, True, False, 1j, "a", "b", "c", b"x", None, [1, 2], ["a"], [], ("a", "b"), (1, 2), {"k": 1},
    {"k": "v"}, {"a"}, torch.zeros(1), nn.Linear(1, 1), Color.RED, Color.BLUE, Config(1), nn.LSTM, int,
]


def _tower_int(hint: Any, v: Any) -> bool:
    """An int (or float) where float (or complex) is annotated: accepted under PEP 484's numeric tower."""
    return (isinstance(v, (int, float)) and hint in (float, complex)) or (
        hint in (float | str, Optional[float]) and isinstance(v, int))  # noqa: UP045


@pytest.mark.parametrize("hint", HINTS, ids=repr)
def test_inline_and_probe_verdicts_are_beartypes(hint: Any) -> None:
    """Every (hint, value): the generated fast check, the slow path and is_bearable (the numeric tower on) agree."""
    node = parse_annotation(hint, Slots(), "test")
    assert node is not None and node.kind is NodeKind.TYPE and node.plain is not None
    fast = make_checker(node)
    for v in VALUES:
        expected = is_bearable(v, hint, conf=TOWER)
        assert fast(v, [], []) is expected, (hint, v)
        assert (node.plain.reason(v) is None) is expected, (hint, v)


@pytest.mark.parametrize("hint", HINTS, ids=repr)
def test_same_verdicts_as_jaxtyped_beartype_on_a_mixed_signature(hint: Any) -> None:
    """f(x: Step, p: hint) -> Step under @check and under jaxtyped(typechecker=beartype): one verdict,
    except the documented difference (an int for a float, accepted as PEP 484 says)."""
    def f(x: Any, p: Any) -> Any:
        return x

    f.__annotations__ = {"x": Step, "p": hint, "return": Step}
    ours, theirs = check(f), jaxtyped(typechecker=beartype)(f)
    for v in VALUES:
        try:
            theirs(X, v)
            expected = True
        except Exception:
            expected = _tower_int(hint, v)
        try:
            ours(X, v)
            got = True
        except sv.ShapeError:
            got = False
        assert got is expected, (hint, v)


# ------------------------------------------------------------------ forms of parameters


@check
def layer_step(x: Step, h: StepHidden, mode: Literal["tanh", "relu"] = "tanh", dropout: float = 0.0,
               tags: list[str] | None = None, *extra: int, **options: str) -> StepHidden:
    return h


def test_optional_literal_float_generic_args_and_kwargs() -> None:
    assert layer_step(X, H) is H
    assert layer_step(X, H, "relu", 1, ["a"], 1, 2, name="n") is H  # an int for a float: the numeric tower
    cases = [
        ((X, H, "gelu"), {}, "mode", r"str 'gelu' is not one of 'tanh', 'relu'[\s\S]*hint: pass `mode` one of "
                                     r"'tanh', 'relu'"),
        ((X, H, "tanh", "0.5"), {}, "dropout", r"str '0.5' is not an instance of float"),
        ((X, H, "tanh", 0.5, [1]), {}, "tags", r"index 0 item int 1 not instance of str[\s\S]*expected: "
                                                r"list\[str\] \| None"),
        ((X, H, "tanh", 0.5, None, 1, "2"), {}, "extra[1]", r"str '2' is not an instance of int"),
        ((X, H), {"name": 3}, "options['name']", r"int 3 is not an instance of str"),
    ]
    for args, kwargs, argument, message in cases:
        with pytest.raises(sv.ShapeError, match=message) as info:
            layer_step(*args, **kwargs)
        assert (info.value.code, info.value.argument) == ("annotation", argument)


def test_a_default_is_not_checked_and_a_passed_value_is() -> None:
    @check
    def f(x: Step, mode: str = None, n: int = 3) -> Step:  # noqa: RUF013 -- a default beartype does not check
        return x

    assert f(X) is X
    assert f(X, None, 3) is X  # the default object itself, passed: not checked either (beartype would)
    with pytest.raises(sv.ShapeError, match=r"argument `mode`[\s\S]*hint: pass `mode` a value of type str"):
        f(X, n=4, mode=5)
    with pytest.raises(sv.ShapeError, match=r"argument `n`[\s\S]*hint: pass `n` a value, or annotate it "
                                            r"int \| None if None is meant"):
        f(X, "tanh", None)


def test_the_return_value_is_checked() -> None:
    @check
    def count(x: Step) -> int:
        return x.shape[0] if x.shape[1] == 10 else str(x.shape[0])  # type: ignore[return-value]

    @check
    def nothing(x: Step) -> None:
        return x  # type: ignore[return-value]

    assert count(X) == 3
    with pytest.raises(sv.ShapeError, match=r"argument `return value`\n  str '3' is not an instance of int"):
        count(torch.zeros(3, 11))
    with pytest.raises(sv.ShapeError, match=r"argument `return value`\n  Tensor.* is not an instance of None"):
        nothing(X)


def test_a_non_array_member_of_an_array_tuple_or_union() -> None:
    @check
    def f(pair: tuple[StepHidden, int], either: Batch | list[int]) -> None:
        return None

    f((H, 1), torch.zeros(3))
    f((H, 1), [1, 2])
    with pytest.raises(sv.ShapeError, match=r"argument `pair\[1\]`\n  str 'a' is not an instance of int"):
        f((H, "a"), [1])
    with pytest.raises(sv.ShapeError, match=r"argument `either`\n  fits none of the union's members; first: "
                                            r"dim 0 \(bs\) is 4"):
        f((H, 1), torch.zeros(4))
    with pytest.raises(sv.ShapeError, match=r"argument `either`"):
        f((H, 1), ["a"])


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.RNNCell(10, 20)

    @check
    def step(self, x: Step, h: StepHidden, mode: Literal["tanh", "relu"], t: int) -> StepHidden:
        return self.cell(x, h)

    @check
    def forward(self, xs: Float[Tensor, "T bs emb"], h: StepHidden, mode: str = "tanh",
                cfg: Later | None = None, lengths: list[int] | None = None) -> Float[Tensor, "T bs h"]:
        ys = []
        for t in range(xs.shape[0]):
            h = self.step(xs[t], h, mode, t)
            ys.append(h)
        return torch.stack(ys)

    @check
    def same(self, other: Self, n: int) -> Self:  # beartype checks Self only under @beartype on the class
        return self


class Later:
    """Defined after Model: its forward's annotation is a forward reference, resolved on the first call."""


def test_methods_forward_references_and_self() -> None:
    m, xs = Model(), torch.randn(4, 3, 10)
    assert m(xs, H, "relu", Later()).shape == (4, 3, 20)
    with pytest.raises(sv.ShapeError, match=r"@check Model.forward \(Model\): argument `cfg`"):
        m(xs, H, "relu", Config(2))
    with pytest.raises(sv.ShapeError, match=r"@check Model.step \(Model\): argument `mode`"):
        m(xs, H, "gelu")
    assert m.same(m, 1) is m
    with pytest.raises(sv.ShapeError, match=r"argument `n`"):
        m.same(m, "1")
    unchecked = Model.same.__shapeviz_signature__.unchecked
    assert len(unchecked) == 2 and all("Self (beartype cannot check it" in u for u in unchecked), unchecked
    assert unchecked[0].startswith("Model.same, parameter `other`: Self")


# ------------------------------------------------------------------ hints left unchecked


def test_hints_beartype_cannot_check_are_left_unchecked_and_listed() -> None:
    def f(x: Any, a: Any, b: Any, c: Any, d: Any) -> None:
        return None

    f.__annotations__ = {"x": Step, "a": ClassVar[int], "b": list[Float[Tensor, "bs h"]], "c": Any,
                         "d": Float[Tensor, "bs"] | Any}
    checked = check(f)  # no exception at decoration
    assert checked(X, "anything", [1], object(), "x") is None
    unchecked = checked.__shapeviz_signature__.unchecked
    assert [u.split(":", 1)[0] for u in unchecked] == [
        "test_hints_beartype_cannot_check_are_left_unchecked_and_listed.<locals>.f, parameter `a`",
        "test_hints_beartype_cannot_check_are_left_unchecked_and_listed.<locals>.f, parameter `b`"]
    assert "beartype cannot check it" in unchecked[0]
    assert "sv.check reads array annotations at the top level" in unchecked[1]
    # a forward reference left as text (typing.get_type_hints resolves them all; hints given by hand may not)
    undefined = "Undefined"
    sig = compile_signature(f, {"x": Step, "a": undefined, "b": list[undefined]})  # type: ignore[valid-type]
    assert sig.nodes[1:3] == (None, None) and all("a forward reference that was not resolved" in u
                                                  for u in sig.unchecked)


def test_a_container_beartype_rejected_only_on_the_call_is_still_named() -> None:
    """beartype checks one random item of a container: the slow path asks again and, if the item never
    comes up, names the arguments it could be (here the fast path's 'no' is simulated with values that fit)."""
    sig = layer_step.__shapeviz_signature__
    err = explain_mismatch(sig, "@check layer_step", (X, H, "tanh", 0.0, ["a"], (), {}), [])
    assert err.argument == "tags" and err.code == "annotation"
    assert "beartype rejected `tags` on the call but let it through 32 re-checks" in str(err)
    assert "hint: look for the item of `tags` that does not fit its annotation" in str(err)


def test_an_async_functions_return_is_left_unchecked() -> None:
    import asyncio

    @check
    async def f(x: Step, n: int) -> None:
        return None

    assert asyncio.run(f(X, 1)) is None
    with pytest.raises(sv.ShapeError, match=r"argument `n`"):
        f(X, "1")
    assert "an async function returns a coroutine" in f.__shapeviz_signature__.unchecked[0]


def test_array_annotations_on_kwargs_are_refused() -> None:
    def f(**kw: Any) -> None:
        return None

    f.__annotations__ = {"kw": Step}
    with pytest.raises(sv.SpecError, match=r"does not check array annotations on \*\*kwargs"):
        check(f)


# ------------------------------------------------------------------ cost


def test_array_only_and_plain_class_signatures_use_no_beartype_probe() -> None:
    """The array part's generated code is what it was; plain classes and literals add one inline test each,
    and beartype is not even imported for them (a probe, for list[int] here, is)."""
    code = (
        "import sys, torch\n"
        "from typing import Literal\n"
        "from shapeviz.annotations.aliases import Step, check\n"
        "@check\n"
        "def f(x: Step, n: int, mode: Literal['a', 'b'], scale: float | None = None) -> Step:\n"
        "    return x\n"
        "f(torch.zeros(2, 3), 1, 'a')\n"
        "src = f.__shapeviz_signature__.args_check.__shapeviz_source__\n"
        "print('beartype' in sys.modules, 'Violation' in src)\n"
        "@check\n"
        "def g(x: Step, lengths: list[int]) -> Step:\n"
        "    return x\n"
        "print('beartype' in sys.modules, 'Violation' in g.__shapeviz_signature__.args_check.__shapeviz_source__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True", "True"]


@check
def step_only(x: Step, h: StepHidden) -> StepHidden:
    return h


def test_array_only_generated_source_has_no_non_array_checks() -> None:
    sig = step_only.__shapeviz_signature__
    for fn in (sig.args_check, sig.result_check):
        src = fn.__shapeviz_source__
        assert "Violation" not in src and "literal_ok" not in src and " is not D" not in src


# ------------------------------------------------------------------ torch.compile


def test_non_array_checks_compile_without_graph_breaks() -> None:
    torch._dynamo.reset()
    model, xs = Model(), torch.randn(3, 2, 10)
    h = torch.zeros(2, 20)
    explanation = torch._dynamo.explain(model)(xs, h, "relu", Later(), [3, 3])  # list[int]: left out there
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    assert torch.allclose(compiled(xs, h, "relu", None, [3, 3]), model(xs, h, "relu", None, [3, 3]), atol=1e-6)


def test_a_wrong_non_array_argument_under_compile_raises_shape_error() -> None:
    torch._dynamo.reset()
    compiled = torch.compile(Model(), backend="eager")  # not fullgraph: the slow path runs eagerly
    with pytest.raises(sv.ShapeError, match=r"argument `mode`"):
        compiled(torch.randn(3, 2, 10), torch.zeros(2, 20), "gelu")


def test_under_fullgraph_inline_hints_are_checked_and_beartype_probes_left_out() -> None:
    """A Literal (inline) fails like an array does; a hint only a beartype probe checks (list[int]) is left
    out while dynamo traces (it cannot trace beartype's random pick of an item) and checked eagerly."""
    @check
    def f(x: Step, mode: Literal["a", "b"], lengths: list[int]) -> Step:
        return x * 2

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="eager")
    assert torch.equal(compiled(X + 1, "a", [1]), (X + 1) * 2)
    with pytest.raises(Exception, match=r"a @sv.check shape check failed while compiling"):
        compiled(X, "c", [1])
    assert torch.equal(compiled(X, "a", ["1"]), X * 2)  # not checked under compile (documented)
    with pytest.raises(sv.ShapeError, match=r"argument `lengths`"):
        f(X, "a", ["1"])  # eagerly it is
    assert "Violation" in f.__shapeviz_signature__.args_check.__shapeviz_source__
    assert "Violation" not in f.__shapeviz_signature__.traced[0].__shapeviz_source__
