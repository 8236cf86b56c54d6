"""The gallery builder: one page per example of the registry, written into ``gallery/``.

>>> files = render_texts(EXAMPLES["embed_rnn"])
>>> "(T=5, bs=2, emb=20)" in files["README.md"]
True
>>> page_script(EXAMPLES["gru"]).splitlines()[0]                 # a complete script, imports first
'import torch'

A page has one Python block, a complete script written as a student would (torch and
``import shapeviz as sv`` only: the example's classes, the build function's body, then run it
under ``sv.checking``, trace it, explain it, draw it; see :mod:`shapeviz.gallery.script`), the unrolled
diagram, the ``explain`` table of its recurrent layer and the trace table of one forward pass; a
"common mistake" page also shows the real :class:`~shapeviz.ShapeError` its wrong call raises,
and its diagram draws the wrong call (the wrong tensor highlighted) beside the fix.

The DOT text is the source of truth. Images come from one backend, graphviz-pure (a core
dependency, so every machine renders them alike), and are re-rendered only when a page's DOT
changed or an image is missing; without graphviz-pure they are left as they are. Files whose
content is unchanged are not rewritten, so a rebuild with nothing changed leaves the tree as it
is. Rebuild with ``shapeviz gallery`` (or :func:`build`).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import torch

from shapeviz._errors import ShapeError, SpecError
from shapeviz.core.dimensions import dims
from shapeviz.gallery.registry import DATA_FLOW, EXAMPLES, SEED_SYSTEMS, Built, Example
from shapeviz.gallery.script import page_script, size_args
from shapeviz.render.files import write_atomic
from shapeviz.render.text import explain
from shapeviz.render.unrolled import unroll

__all__ = ["DIAGRAM", "EXAMPLES", "IMAGE_BACKEND", "Built", "Example", "Page", "build", "capture_error", "index_text",
           "page", "page_script", "render_texts", "sections", "write_if_changed"]

DIAGRAM = "unrolled"
"""File stem of each page's diagram: ``unrolled.dot``, ``unrolled.svg``, ``unrolled.png``."""

IMAGE_BACKEND = "graphviz-pure"
"""The one program the committed gallery images are rendered with."""

def _fence(lang: str, text: str) -> str:
    return f"```{lang}\n{text.rstrip()}\n```"


def capture_error(ex: Example) -> ShapeError:
    """Run a mistake page's wrong call and return the ShapeError it raises.

    >>> err = capture_error(EXAMPLES["mistake_state_2d"])
    >>> err.code, err.actual                          # h0 (bs, h) where (layers*D, bs, h) belongs
    ('hidden_ndim', (3, 8))
    """
    if ex.wrong is None or ex.fix is None:
        raise ValueError(f"{ex.name} is not a common-mistake example")
    try:
        ex.wrong()
    except ShapeError as err:
        error = err
    else:
        raise AssertionError(f"gallery: {ex.name}: the wrong call raised no ShapeError")
    ex.fix()  # must run clean: a ShapeError here is a broken page
    return error


def _trace(built: Built) -> Any:
    from shapeviz.tracing.session import trace

    with dims(**built.sizes):
        return trace(built.model, *built.inputs, inputs_dims=built.inputs_dims, ops=built.ops)


def _call_text(built: Built) -> str:
    args = ", ".join(f"<{'x'.join(str(s) for s in t.shape)} tensor>" if isinstance(t, torch.Tensor)
                     else "..." for t in built.inputs)
    extra = f", inputs_dims={built.inputs_dims!r}" if built.inputs_dims else ""
    extra += ", ops=True" if built.ops else ""
    return f"sv.trace(model, {args}{extra})"


def _sizes(built: Built, tr: Any) -> tuple[int | None, int | None]:
    """T and bs of the page: given by the build, else read from the trace."""
    T, bs = built.T, built.bs
    if T is None and bs is None and any(c.conventions is not None for c in tr.calls):
        T = (tr.sizes.get("T") or [None])[0]
        bs = (tr.sizes.get("bs") or [None])[0]
    return T, bs


def mistake_dot(fix_source: str, error: ShapeError, wrong: str) -> str:
    """The fix's diagram with the wrong call drawn beside it, its wrong tensor highlighted.

    >>> err = capture_error(EXAMPLES["mistake_state_2d"])
    >>> dot = mistake_dot('digraph unroll {\\nlabel=<RNN>;\\n}\\n', err, "state_2d")
    >>> "the fix: " in dot, "(3, 8)" in dot                       # h_0 given as (bs, h)
    (True, True)
    """
    rows = [f'<TR><TD BGCOLOR="#f5b7b1"><B>{escape(error.argument)} given: {escape(str(error.actual))}</B></TD></TR>',
            f"<TR><TD>expected {escape(str(error.expected))}</TD></TR>",
            *(f'<TR><TD ALIGN="LEFT">hint: {escape(h)}</TD></TR>' for h in error.hints)]
    label = (f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4" COLOR="#c0392b">'
             f'<TR><TD BGCOLOR="#fbe3e0"><B>the mistake: {escape(wrong)}()</B>  [{escape(error.code)}]</TD></TR>'
             f'<TR><TD>{escape(error.module)}</TD></TR>{"".join(rows)}</TABLE>>')
    body = fix_source.rstrip().removesuffix("}")
    body = body.replace("label=<", "label=<the fix: ", 1)  # the first label is the caption
    return body + f'mistake [label={label} shape="plain"];\n}}\n'


@dataclass(frozen=True)
class Page:
    """What one gallery page shows, as text: both the Markdown page and the site's HTML page read it."""

    example: Example
    script: str  # the complete script of the page
    explain_call: str  # "sv.explain(GRU(8, 16), T=6, bs=3)"
    explain_text: str
    trace_call: str
    trace_text: str
    dot: str  # the diagram (a mistake page: the wrong call beside the fix)
    checks: tuple[str, ...] = ()
    error: ShapeError | None = None  # a mistake page: what its wrong call raised
    fix_note: str = ""


def page(ex: Example) -> Page:
    """Build one example and collect what its page shows.

    >>> p = page(EXAMPLES["gru"])
    >>> p.explain_call, p.error is None
    ('sv.explain(GRU(8, 16), T=6, bs=3)', True)
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        built = ex.build()
        layer = built.layer_or_model()
        tr = _trace(built)
        diagram = unroll(layer, T=built.T, bs=built.bs) if built.draw == "layer" else tr.unroll()
        T, bs = _sizes(built, tr)
        dot, error, fix_note = diagram.source, None, ""
        if ex.wrong is not None and ex.fix is not None:
            error = capture_error(ex)
            dot = mistake_dot(dot, error, ex.wrong.__name__)
            fix_doc = (inspect.getdoc(ex.fix) or "").splitlines()[0]
            fix_note = (f"`{ex.fix.__name__}()` in the script. {fix_doc} The diagram draws the wrong call "
                        "(the wrong tensor in red) beside the fixed layer.")
        return Page(ex, page_script(ex, T, bs, built), f"sv.explain({layer!r}{size_args(T, bs)})",
                    explain(layer, T=T, bs=bs), _call_text(built), tr.table(), dot, tuple(built.checks),
                    error, fix_note)


def render_texts(ex: Example) -> dict[str, str]:
    """The text files of one page: ``README.md`` and ``unrolled.dot`` (no dot program needed).

    >>> files = render_texts(EXAMPLES["gru"])
    >>> sorted(files), "(T=6, bs=3, emb=8)" in files["README.md"]
    (['README.md', 'unrolled.dot'], True)
    """
    p = page(ex)
    parts = [f"# {ex.title}", "", ex.about, "", f"[![{ex.title}: unrolled diagram]({DIAGRAM}.svg)]({DIAGRAM}.svg)", "",
             f"The diagram at full size: [{DIAGRAM}.svg]({DIAGRAM}.svg) (click it; zoom in the browser).", "",
             "## Code", "", _fence("python", p.script), ""]
    if p.error is not None and ex.wrong is not None:
        parts += [f"## What shapeviz says about `{ex.wrong.__name__}()` (`{p.error.code}`)", "",
                  _fence("text", str(p.error)), "", "## The fix", "", p.fix_note, ""]
    if p.checks:
        parts += ["Checked while building this page:", ""] + [f"* {c}" for c in p.checks] + [""]
    parts += [f"## Conventions: `{p.explain_call}`", "", _fence("text", p.explain_text), "",
              f"## Trace: `{p.trace_call}`", "", _fence("text", p.trace_text), "",
              f"Diagram: [{DIAGRAM}.svg]({DIAGRAM}.svg), [{DIAGRAM}.png]({DIAGRAM}.png), "
              f"DOT source [{DIAGRAM}.dot]({DIAGRAM}.dot), images rendered with {IMAGE_BACKEND}. "
              "Rebuild: `shapeviz gallery`.", ""]
    return {"README.md": "\n".join(parts), f"{DIAGRAM}.dot": p.dot}


def sections(examples: Iterable[Example] | None = None) -> list[tuple[str, list[Example]]]:
    """The gallery's sections, in order: the classic textbook RNN examples, LSTM and GRU, decoders, mistakes.

    >>> [len(group) for head, group in sections()]
    [9, 7, 8, 3, 5]
    >>> sections()[3][0]
    'Your own recurrent layers'
    """
    from shapeviz.gallery.own_layers import OWN_LAYERS

    items = list(EXAMPLES.values() if examples is None else examples)
    rest = SEED_SYSTEMS + DATA_FLOW + OWN_LAYERS
    groups = [("Classic textbook RNN examples", [e for e in items if not e.is_mistake and e.name in SEED_SYSTEMS]),
              ("LSTM and GRU", [e for e in items if not e.is_mistake and e.name not in rest]),
              ("Decoders and data flow", [e for e in items if e.name in DATA_FLOW]),
              ("Your own recurrent layers", [e for e in items if e.name in OWN_LAYERS]),
              ("Common mistakes", [e for e in items if e.is_mistake])]
    return [(head, group) for head, group in groups if group]


def index_text(examples: Iterable[Example] | None = None) -> str:
    """``gallery/README.md``: the index with a thumbnail per page.

    >>> index_text().splitlines()[0]
    '# shapeviz gallery'
    """
    lines = ["# shapeviz gallery", "",
             "Every page shows one complete script (it runs as pasted), its unrolled diagram, the "
             "`sv.explain` table of its recurrent layer and the trace of one forward pass. The first pages "
             "are the classic textbook RNN examples (a from-scratch char-RNN, nn.RNN, RNNCell loops), "
             "written afresh; then LSTM and GRU, decoders and data flow, and common mistakes with the real "
             "`ShapeError` shapeviz raises and the fix.", "",
             "Built by `shapeviz/gallery/builder.py`; rebuild with `shapeviz gallery` (a test fails when "
             f"these files are stale). Images are rendered with {IMAGE_BACKEND}; the DOT files are the "
             "source. `models/` holds model files for the command line (`shapeviz trace`, `shapeviz check`).",
             ""]
    for head, group in sections(examples):
        lines += [f"## {head}", "", "| | | |", "|---|---|---|"]
        cells = [f'[<img src="{e.name}/{DIAGRAM}.png" width="260" alt="{e.title}"><br>{e.title}]({e.name}/README.md)'
                 for e in group]
        for i in range(0, len(cells), 3):
            row = cells[i:i + 3] + [""] * (3 - len(cells[i:i + 3]))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def write_if_changed(path: Path, data: str | bytes) -> bool:
    """Write ``data`` unless ``path`` already holds it, all or nothing; returns whether it wrote.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "a.txt"
    ...     write_if_changed(p, "x"), write_if_changed(p, "x"), write_if_changed(p, b"y")
    (True, False, True)
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if path.is_file() and path.read_bytes() == raw:
        return False
    write_atomic(path, raw)  # a temporary file renamed into place: never a truncated file
    return True


def build(outdir: str | Path = "gallery", *, images: bool = True, names: Iterable[str] | None = None,
          progress: Callable[[str], None] | None = None) -> list[Path]:
    """Write the gallery into ``outdir``; returns the files written (unchanged files are not rewritten).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     first = [p.name for p in build(d, images=False, names=["gru"])]
    ...     first, build(d, images=False, names=["gru"])
    (['README.md', 'unrolled.dot', 'README.md'], [])

    ``images=False`` writes only the text files (README.md pages and DOT). With images, a page's
    ``unrolled.svg`` and ``unrolled.png`` are rendered with graphviz-pure when its DOT changed or an
    image is missing; without graphviz-pure they are not rewritten (``progress`` says so).
    """
    from shapeviz.render.backend import find_graphviz_pure, run_dot

    out = Path(outdir)
    wanted = list(EXAMPLES) if names is None else list(names)
    unknown = [n for n in wanted if n not in EXAMPLES]
    if unknown:
        raise SpecError(f"unknown gallery example(s) {', '.join(unknown)}; valid: {', '.join(EXAMPLES)}")
    backend = find_graphviz_pure() if images else None
    if images and backend is None and progress is not None:
        progress(f"{IMAGE_BACKEND} not found (pip install graphviz-pure): images are not rewritten")
    written: list[Path] = []
    for i, name in enumerate(wanted, 1):
        ex = EXAMPLES[name]
        page = out / name
        texts = render_texts(ex)
        dot_changed = False
        for fname, text in texts.items():
            if write_if_changed(page / fname, text):
                written.append(page / fname)
                dot_changed |= fname.endswith(".dot")
        if backend is not None:
            for fmt in ("svg", "png"):
                path = page / f"{DIAGRAM}.{fmt}"
                if (dot_changed or not path.exists()) and write_if_changed(
                        path, run_dot(texts[f"{DIAGRAM}.dot"], fmt, backend)):
                    written.append(path)
        if progress is not None:
            progress(f"[{i}/{len(wanted)}] {name}: {ex.title}")
    index = out / "README.md"
    if write_if_changed(index, index_text(EXAMPLES[n] for n in wanted)):
        written.append(index)
    return written
