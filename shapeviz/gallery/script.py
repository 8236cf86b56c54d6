"""A gallery page's complete script, written as a student would: torch and ``import shapeviz as sv``, nothing else.

>>> from shapeviz.gallery.registry import EXAMPLES
>>> text = page_script(EXAMPLES["gru"], T=6, bs=3)
>>> print(text[text.index("torch.manual_seed"):])
torch.manual_seed(0)  # the same numbers on every run
layer = nn.GRU(8, 16)
x = torch.randn(6, 3, 8)  # (T=6, bs=3, emb=8)
<BLANKLINE>
with sv.checking(inputs="T bs emb"):  # every recurrent call is checked
    trace = sv.trace(layer, x, inputs_dims="T bs emb")
print(trace.table())
print(sv.explain(layer, T=6, bs=3))
print(sv.unroll(trace).render("gru.svg"))
<BLANKLINE>

The registry's code is real code (the builder runs it), written with the gallery's helpers: build
functions return a :class:`~shapeviz.gallery.registry.Built`, layers are made under ``fixed_seed``
and inputs drawn with ``generator=seeded(n)``. The script shows the same code without them: the
classes and functions the page shows, the mistake's wrong call and fix, then the build function's
body inlined at the top level and the calls that check, trace, explain and draw it, written from
the ``Built(...)`` it returns (read with :mod:`ast`). One ``torch.manual_seed(0)`` replaces the
seeds, and only the imports the script uses are written.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import textwrap
from typing import Any

from shapeviz.gallery.registry import EXAMPLES, Built, Example

__all__ = ["page_script", "student_code"]

_BUILT_FIELDS = ("model", "inputs", "inputs_dims", "layer", "sizes", "draw", "T", "bs", "checks", "ops")
_FIXED_SEED = re.compile(r"^(\s*)with fixed_seed\(\d*\):\s*$")
_GENERATOR = re.compile(r",\s*generator=seeded\(\d*\)")
_IMPORTS: tuple[tuple[str, str], ...] = (
    ("torch", "import torch"), ("nn", "import torch.nn as nn"), ("F", "import torch.nn.functional as F"),
    ("Tensor", "from torch import Tensor"))
_RNN_UTILS = ("PackedSequence", "pack_padded_sequence", "pad_packed_sequence")

_ASSERT_CLOSE = '''\
def assert_close(a: Tensor, b: Tensor, what: str) -> str:
    """Check that two tensors have one shape and equal values (within 1e-6), and say so."""
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    return f"{what} are equal within 1e-6 {tuple(a.shape)}"'''


def _source(obj: Any) -> str:
    """The source of a function or class, without the registry's decorator."""
    lines = textwrap.dedent(inspect.getsource(obj)).rstrip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(("def ", "class ")))
    return "\n".join(lines[start:])


def size_args(T: int | None, bs: int | None) -> str:
    """``, T=5, bs=2`` for the sizes that are known.

    >>> size_args(5, None)
    ', T=5'
    """
    return "".join(f", {k}={v}" for k, v in (("T", T), ("bs", bs)) if v is not None)


def student_code(src: str) -> str:
    """The gallery's seeding helpers taken out of ``src``: ``with fixed_seed(n):`` blocks dedented,
    ``generator=seeded(n)`` dropped, any other ``seeded(n)`` written as torch's own generator.

    >>> print(student_code("def f():\\n    with fixed_seed(0):\\n        a = nn.GRU(2, 3)\\n"
    ...                    "    return a, torch.randn(2, generator=seeded(1)), seeded(2)"))
    def f():
        a = nn.GRU(2, 3)
        return a, torch.randn(2), torch.Generator().manual_seed(2)
    """
    out: list[str] = []
    block: str | None = None  # the indent of the `with fixed_seed` being removed
    for line in src.splitlines():
        if block is not None:
            if not line.strip() or line.startswith(block + " "):
                out.append(line[4:] if line.strip() else line)
                continue
            block = None
        m = _FIXED_SEED.match(line)
        if m is not None:
            block = m.group(1)
            continue
        out.append(line)
    text = _GENERATOR.sub("", "\n".join(out))
    return text.replace("seeded(", "torch.Generator().manual_seed(")


def _imports(code: str) -> str:
    """The import lines ``code`` needs (torch always; shapeviz as sv)."""
    used = set(re.findall(r"\b\w+\b", code))
    lines = [line for name, line in _IMPORTS if name == "torch" or name in used]
    rnn = [n for n in _RNN_UTILS if n in used]
    if rnn:
        lines.append(f"from torch.nn.utils.rnn import {', '.join(rnn)}")
    return "\n".join(lines) + "\n\nimport shapeviz as sv"


def _inline_build(ex: Example) -> tuple[str, dict[str, str]]:
    """The build function's body at the top level, and the source of each argument of the ``Built`` it returns."""
    src = _source(ex.build)
    fn = ast.parse(src).body[0]
    ret = fn.body[-1] if isinstance(fn, ast.FunctionDef) else None
    call = ret.value if isinstance(ret, ast.Return) else None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Built"
            and isinstance(fn, ast.FunctionDef) and isinstance(ret, ast.Return)):
        raise ValueError(f"gallery: {ex.name}: the build function must end with `return Built(...)`")
    nodes = dict(zip(_BUILT_FIELDS, call.args)) | {k.arg: k.value for k in call.keywords if k.arg}
    args = {k: ast.get_source_segment(src, v) or "" for k, v in nodes.items()}
    inputs = nodes["inputs"]
    if isinstance(inputs, ast.Tuple):
        args["inputs"] = ", ".join(ast.get_source_segment(src, e) or "" for e in inputs.elts)
    else:
        args["inputs"] = "*" + args["inputs"]
    lines = src.splitlines()[fn.body[0].lineno - 1: ret.lineno - 1] if len(fn.body) > 1 else []
    return textwrap.dedent("\n".join(lines)).strip("\n"), args


def page_script(ex: Example, T: int | None = None, bs: int | None = None, built: Built | None = None) -> str:
    """The page's code: one complete script that builds the model, runs it checked, traces, explains and draws it.

    >>> script = page_script(EXAMPLES["embed_rnn"])
    >>> 'with sv.dims(vocab=28), sv.checking(inputs="bs T"):' in script, "Built" in script
    (True, False)

    ``T`` and ``bs`` are the sizes the explain call is given; ``built`` is the example built already.
    """
    built = ex.build() if built is None else built
    defs = [_source(s) for s in ex.shows]
    footer: list[str] = ["torch.manual_seed(0)  # the same numbers on every run"]
    if ex.wrong is not None and ex.fix is not None:
        defs += [_source(ex.wrong), _source(ex.fix)]
        footer += ["", "try:", f"    {ex.wrong.__name__}()", "except sv.ShapeError as err:",
                   "    print(err)  # the mistake, caught with the fix in its hint", "",
                   f"{ex.fix.__name__}()  # the fix runs clean", ""]
    body, args = _inline_build(ex)
    model, layer = args["model"], args.get("layer") or args["model"]
    footer += [body, ""] if body else []
    sized = ", ".join(f"{k}={v}" for k, v in built.sizes.items())
    checking = f"sv.checking(inputs={json.dumps(built.inputs_dims)})" if built.inputs_dims else "sv.checking()"
    options = (f", inputs_dims={json.dumps(built.inputs_dims)}" if built.inputs_dims else "") + (
        ", ops=True" if built.ops else "")
    draw = f"{layer}{size_args(built.T, built.bs)}" if built.draw == "layer" else "trace"
    footer += [f"with {f'sv.dims({sized}), ' if sized else ''}{checking}:  # every recurrent call is checked",
               f"    trace = sv.trace({model}, {args['inputs']}{options})", "print(trace.table())"]
    if "checks" in args:
        footer += [f"for check in {args['checks']}:", "    print(check)"]
    footer += [f"print(sv.explain({layer}{size_args(T, bs)}))", f'print(sv.unroll({draw}).render("{ex.name}.svg"))']
    code = student_code("\n\n\n".join(d.strip("\n") for d in defs) + "\n\n\n" + "\n".join(footer))
    if re.search(r"(?<![\w.])assert_close\(", code):
        code = _ASSERT_CLOSE + "\n\n\n" + code
    return _imports(code) + "\n\n\n" + code + "\n"


if __name__ == "__main__":  # a small demo: the script of one page
    print(page_script(EXAMPLES["lstm"]))
