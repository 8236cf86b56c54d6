"""The architecture rules of DESIGN.md, checked on the source tree (AST scans and one subprocess).

- only ``core/`` knows the layout rule: no ``batch_first`` read outside it, except the allowed places below;
- no module is named like a public function of ``shapeviz``;
- nothing private is imported across sub-packages (``shapeviz._errors``/``_views`` are the shared base);
- no file is much over 600 lines;
- ``import shapeviz`` loads none of torch._dynamo, matplotlib, graphviz, IPython.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import shapeviz

PKG = Path(shapeviz.__file__).parent
SOURCES = sorted(PKG.rglob("*.py"))
MAX_LINES = 650

# (file or folder under shapeviz/, enclosing function) -> why reading `.batch_first` there is not a layout branch
BATCH_FIRST_ALLOWED: dict[tuple[str, str], str] = {
    ("tracing/", "Call.to_dict"): "serialises the module's configuration into the trace JSON",
    ("annotations/scratch_models.py", "_ScratchLayer.from_torch"): "copies nn.RNN's constructor arguments",
    ("annotations/scratch_models.py", "_ScratchLayer.forward"):
        "a scratch layer implements both layouts (forward_batch_first / forward_seq_first) and picks "
        "by its own constructor flag, as nn.RNN does",
    ("annotations/scratch_models.py", "ScratchLM.__init__"): "validates a constructor argument (SpecError)",
    ("gallery/site.py", "Config.key"): "the site's grid config names its own page (serialisation of config)",
    ("gallery/site.py", "Config.args"): "the site's grid config prints its constructor arguments",
    ("gallery/site.py", "Config.module"): "the site's grid config passes its flag to the nn constructor",
    ("runtime/compiled.py", "config_of"):
        "reads the configuration into Conventions attribute by attribute while dynamo traces (core's "
        "key_getter uses an itemgetter, which dynamo cannot trace); the layout rule stays in Layout",
}


def _rel(path: Path) -> str:
    return path.relative_to(PKG).as_posix()


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _walk_qualified(node: ast.AST, qual: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """Every node with the dotted name of the function or class that encloses it."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield child, ".".join(qual)
            yield from _walk_qualified(child, (*qual, child.name))
        else:
            yield child, ".".join(qual)
            yield from _walk_qualified(child, qual)


def _batch_first_reads() -> list[tuple[str, str, int]]:
    found = []
    for path in SOURCES:
        rel = _rel(path)
        if rel.startswith("core/"):
            continue
        for node, where in _walk_qualified(_tree(path)):
            if isinstance(node, ast.Attribute) and node.attr == "batch_first" and isinstance(node.ctx, ast.Load):
                found.append((rel, where, node.lineno))
    return found


def _allowed(rel: str, where: str) -> bool:
    return any(_at(rel, place) and where == func for place, func in BATCH_FIRST_ALLOWED)


def _at(rel: str, place: str) -> bool:
    """``rel`` is the file ``place``, or lies in the folder ``place`` (ending in ``/``)."""
    return rel == place or (place.endswith("/") and rel.startswith(place))


def test_no_batch_first_branch_outside_core() -> None:
    bad = [f"shapeviz/{rel}:{line} in {where or '<module>'}" for rel, where, line in _batch_first_reads()
           if not _allowed(rel, where)]
    assert not bad, ("read conv.layout (t_axis, bs_axis, seq_text, flag_text, …) instead of batch_first:\n"
                     + "\n".join(bad))


def test_the_batch_first_allow_list_has_no_stale_entry() -> None:
    reads = _batch_first_reads()
    stale = [(place, func) for place, func in BATCH_FIRST_ALLOWED
             if not any(where == func and _at(rel, place) for rel, where, _ in reads)]
    assert not stale, f"these allowed places no longer read batch_first; remove them: {stale}"


def _public_functions() -> set[str]:
    names = set()
    for name in shapeviz.__all__:
        obj = getattr(shapeviz, name)
        if callable(obj) and not inspect.isclass(obj) and not inspect.ismodule(obj):
            names.add(name)
    return names


def test_no_module_is_named_like_a_public_function() -> None:
    functions = _public_functions()
    assert {"check", "trace", "watch", "dims", "conventions", "unroll"} <= functions  # the scan sees them
    modules = {p.stem for p in SOURCES} | {p.parent.name for p in SOURCES if p.name == "__init__.py"}
    assert not modules & functions, f"rename these modules (sv.<name> is a function): {sorted(modules & functions)}"


def _subpackage(dotted: str) -> str:
    """``shapeviz.core.model`` and ``shapeviz.core`` -> ``core``; a top-level module (``shapeviz.nn``) -> ``""``."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and (PKG / parts[1]).is_dir() else ""


def _is_module(dotted: str) -> bool:
    where = PKG.parent.joinpath(*dotted.split("."))
    return where.with_suffix(".py").exists() or where.is_dir()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _hidden(dotted: str) -> bool:
    """A private module on the way (``shapeviz._errors`` and ``shapeviz._views`` are the shared base every
    package may use)."""
    return any(_private(c) and c not in ("_errors", "_views") for c in dotted.split(".")[1:])


def _private_imports(source: str, package: str) -> list[str]:
    """Private names one module of ``package`` (e.g. ``shapeviz.render``) takes from other sub-packages."""
    mine = _subpackage(package)
    bad = []
    aliases: dict[str, str] = {}  # local name -> a shapeviz module of another sub-package
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base != "shapeviz" and not base.startswith("shapeviz."):
                continue
            for alias in node.names:
                target = f"{base}.{alias.name}"
                module = target if _is_module(target) else base
                if mine and _subpackage(module) == mine:
                    continue
                if _hidden(module) or (module == base and _private(alias.name)):
                    bad.append(f"from {base} import {alias.name} (line {node.lineno})")
                elif module == target:
                    aliases[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith("shapeviz.") or (mine and _subpackage(alias.name) == mine):
                    continue
                if _hidden(alias.name):
                    bad.append(f"import {alias.name} (line {node.lineno})")
                elif alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in aliases):
            bad.append(f"{aliases[node.value.id]}.{node.attr} (line {node.lineno})")
    return bad


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(PKG.parent).parent.parts)


def test_nothing_private_is_imported_across_subpackages() -> None:
    bad = [f"shapeviz/{_rel(p)}: {b}" for p in SOURCES
           for b in _private_imports(p.read_text(encoding="utf-8"), _package_of(p))]
    assert not bad, "give what is shared a public name:\n" + "\n".join(bad)


def test_the_private_import_scan_finds_violations() -> None:
    source = ("from shapeviz.core.dimensions import _NAME\n"
              "from shapeviz.render.html import _cell\n"  # same sub-package: fine
              "from shapeviz._errors import ShapeError\n"
              "from ..runtime import fastcheck\n"
              "fastcheck._plans\n"
              "from shapeviz import __version__\n")
    assert _private_imports(source, "shapeviz.render") == [
        "from shapeviz.core.dimensions import _NAME (line 1)", "shapeviz.runtime.fastcheck._plans (line 5)"]


def _long_files() -> dict[str, int]:
    lengths = {_rel(p): len(p.read_text(encoding="utf-8").splitlines()) for p in SOURCES}
    return {rel: n for rel, n in lengths.items() if n > MAX_LINES}


def test_no_file_over_650_lines() -> None:
    long = _long_files()
    assert not long, f"split these files (one concern per file): {long}"


HEAVY = ("torch._dynamo", "matplotlib", "graphviz", "IPython")


@pytest.mark.parametrize("code", [
    "import shapeviz",
    "import shapeviz as sv; sv.check_call, sv.watch, sv.checking, sv.dims, sv.conventions",
])
def test_import_shapeviz_stays_light(code: str) -> None:
    probe = f"import sys\n{code}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=PKG.parent)
    assert out.stdout.strip() == "", f"{code!r} imported {out.stdout.strip()}"


def test_import_shapeviz_alone_does_not_import_torch() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, shapeviz; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True, cwd=PKG.parent)
    assert out.stdout.strip() == "False"


LAYERS = ("_views", "_errors", "core", "tracing", "runtime", "render", "annotations", "gallery", "apps")
"""The sub-packages from the bottom up: each imports only those below it (lazy imports included). Data
(core's Conventions, tracing's Trace) never imports render: renderers are registered from above (_views)."""


def _imports_of(path: Path) -> set[str]:
    """The shapeviz sub-packages one source file imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] if node.module != "shapeviz" else [f"shapeviz.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "shapeviz" and len(parts) > 1:
                out.add(parts[1])
    return out


def test_the_subpackages_import_only_what_is_below_them() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for path in SOURCES:
        rel = path.relative_to(PKG)
        mine = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem in LAYERS else None
        if mine not in rank:
            continue  # the facade and the public import paths (typing.py, nn.py …) sit above everything
        for other in _imports_of(path) - {mine}:
            if other in rank and rank[other] > rank[mine]:
                bad.append(f"shapeviz/{rel}: {mine} imports {other}")
    assert not bad, "imports must point down " + " < ".join(LAYERS) + ":\n" + "\n".join(sorted(bad))


def test_the_layer_scan_sees_lazy_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import torch\nfrom shapeviz.core.model import conventions\n"
                      "def f():\n    from shapeviz.render.html import shape_error_html\n"
                      "    import shapeviz.tracing.session\n    from shapeviz import _views\n", encoding="utf-8")
    assert _imports_of(source) == {"core", "render", "tracing", "_views"}


# the sizes and ndims a recurrent call must have, as Conventions/Layout state them: only core/callfit.py turns them
# into what a call is expected to be (every other module reads the rule's CallRule, expected(), state_shapes())
CALL_SIZES = frozenset({"input_size", "hidden_size", "proj_size", "h_out", "c_size", "stacked", "batched_ndim",
                        "unbatched_ndim", "state_arity", "state_batched_ndim", "state_tuple"})
FIT_JUDGES = ("runtime/", "apps/")  # what checks or diagnoses a recurrent call (annotations/ calls check_call)


def _fit_comparisons(source: str) -> list[str]:
    """Comparisons that judge a call against the conventions outside the rule's home: an operand that reads one of
    :data:`CALL_SIZES`, or a ``len(...)`` tested for equality with a literal arity or ndim (``len(hx) != 2``)."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        read = sorted({n.attr for op in operands for n in ast.walk(op)
                       if isinstance(n, ast.Attribute) and n.attr in CALL_SIZES})
        literal_len = (all(isinstance(o, (ast.Eq, ast.NotEq)) for o in node.ops)
                       and any(isinstance(op, ast.Call) and isinstance(op.func, ast.Name) and op.func.id == "len"
                               for op in operands)
                       and any(isinstance(op, ast.Constant) and type(op.value) is int and op.value > 1
                               for op in operands))
        if read or literal_len:
            why = f"reads {', '.join(read)}" if read else "a literal length"
            bad.append(f"line {node.lineno}: {ast.unparse(node)} ({why})")
    return bad


def test_one_call_fit_rule() -> None:
    """Issue 23: the call-fit rule has one home (core/callfit.py); the fast path, the compiled path, declared layers
    and the diagnosis read what a call is expected to be from it, never from Conventions/Layout again."""
    bad = [f"shapeviz/{_rel(p)}: {b}" for p in SOURCES if _rel(p).startswith(FIT_JUDGES)
           for b in _fit_comparisons(p.read_text(encoding="utf-8"))]
    assert not bad, ("read what a call must be from shapeviz.core.callfit (CallRule, expected, state_shapes, "
                     "state_parts):\n" + "\n".join(bad))


def test_the_fit_rule_scan_finds_violations() -> None:
    source = ("if sh[-1] != conv.input_size: pass\n"
              "if len(hx) != 2: pass\n"
              "if x.dim() == lay.batched_ndim + 1: pass\n"
              "if sh[-1] != want[-1] or len(sh) != rule.nd_batched or len(words) >= 2: pass\n")
    assert [b.split(":")[0] for b in _fit_comparisons(source)] == ["line 1", "line 2", "line 3"]
