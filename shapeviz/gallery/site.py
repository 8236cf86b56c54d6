"""``shapeviz site DIR``: the gallery and a conventions explorer as a static site (plain files).

>>> cfg = Config("LSTM", layers=2, bidirectional=True, T=5, bs=3)
>>> cfg.key, cfg.module().hidden_size                      # the layer this configuration draws
('LSTM-L2-bi-sf-p0-T5-bs3', 20)
>>> Config("GRU", cell=True).kind, Config("GRU", cell=True).key   # family as in Conventions; the class is kind
('GRUCell', 'GRUCell-L1-uni-sf-p0-T3-bs2')

The site has an index, one HTML page per gallery example (diagram, code, explain table, trace),
and ``explorer.html``. Its controls name a layer as :class:`~shapeviz.core.model.Conventions` does: the
family (RNN, LSTM or GRU), ``cell`` (nn.RNNCell, LSTMCell, GRUCell), ``num_layers``, ``bidirectional``,
``batch_first``; then any input_size, hidden_size, proj_size (LSTM), T and bs, and batched, unbatched or
packed input. The shapes table, the code, the ``sv.explain`` text and its notes are computed in the page
from ``explorer-rule.js`` (:mod:`shapeviz.gallery.explorer_rule`: each argument's dims, and explain's text
as a template, written out of ``Conventions`` and checked against it): the script multiplies sizes, it knows
no shape rule. The unrolled diagram is drawn here, when the site is built, for every configuration of
:data:`GRID` (input_size=10, hidden_size=20; proj_size, T and bs from the grid), one small
``explorer/<key>.js`` file each; the page says so beside it. The page keeps the choice in the URL
(``explorer.html#family=LSTM&cell=0&layers=2&...``), so a teacher can link to it; links written before
the family and the cell were separate (``family=GRUCell``) still load. No server, no network, no external
fonts or scripts: open ``index.html``, or host the folder anywhere static (``python -m http.server``,
GitHub Pages).
"""

from __future__ import annotations

import itertools
import json
import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import torch.nn as nn

from shapeviz._errors import MissingBackendError, SpecError
from shapeviz.core.model import conventions
from shapeviz.gallery.builder import EXAMPLES, IMAGE_BACKEND, Page, page, sections, write_if_changed
from shapeviz.gallery.explorer_rule import FAMILIES, rule_js
from shapeviz.gallery.site_assets import CSS, EXPLORER_JS
from shapeviz.render.backend import Backend, find_backend, find_graphviz_pure, run_dot
from shapeviz.render.files import write_atomic
from shapeviz.render.html import inline_markdown
from shapeviz.render.unrolled import unroll

__all__ = ["EMB", "FAMILIES", "GRID", "HIDDEN", "MANIFEST", "Config", "build_site", "claim", "configs",
           "fragment", "planned_files"]

EMB, HIDDEN = 10, 20
"""input_size and hidden_size of every pre-drawn explorer diagram; proj_size is 0 or HIDDEN // 2."""

GRID: dict[str, tuple[int, ...]] = {"layers": (1, 2, 3, 4), "proj": (0, HIDDEN // 2), "T": (1, 3, 5),
                                    "bs": (1, 2, 4)}
"""The explorer's finite grid: the diagram of every combination (with the families and flags) is pre-drawn."""


@dataclass(frozen=True)
class Config:
    """One pre-drawn explorer diagram (cells ignore layers, bidirectional, batch_first; only LSTM has proj).

    ``family`` is the family as :class:`~shapeviz.core.model.Conventions` names it (``"RNN"``, ``"LSTM"``,
    ``"GRU"``) and ``cell`` says whether the layer is its cell; :attr:`kind` is the class name.

    >>> Config("GRU", layers=3, bidirectional=True, cell=True).key                # a cell: one step, no layers
    'GRUCell-L1-uni-sf-p0-T3-bs2'
    """

    family: str
    layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    proj: int = 0
    T: int = 3
    bs: int = 2
    cell: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise SpecError(f"explorer: unknown family {self.family!r}; valid: {', '.join(FAMILIES)} "
                            "(a cell is cell=True: Config('GRU', cell=True) is nn.GRUCell)")
        if self.cell:
            object.__setattr__(self, "layers", 1)
            object.__setattr__(self, "bidirectional", False)
            object.__setattr__(self, "batch_first", False)
        if self.family != "LSTM" or self.cell:
            object.__setattr__(self, "proj", 0)

    @property
    def kind(self) -> str:
        """The class name: ``"GRU"``, ``"GRUCell"``, … (as :attr:`Conventions.kind`)."""
        return self.family + ("Cell" if self.cell else "")

    @property
    def key(self) -> str:
        return "-".join([self.kind, f"L{self.layers}", "bi" if self.bidirectional else "uni",
                         "bf" if self.batch_first else "sf", f"p{self.proj}", f"T{self.T}", f"bs{self.bs}"])

    def module(self) -> nn.Module:
        """The layer itself, on the meta device (no weights allocated)."""
        kw: dict[str, Any] = {"device": "meta"}
        if not self.cell:
            kw.update(num_layers=self.layers, bidirectional=self.bidirectional, batch_first=self.batch_first)
        if self.proj:
            kw["proj_size"] = self.proj
        return getattr(nn, self.kind)(EMB, HIDDEN, **kw)

    def args(self) -> str:
        """The constructor's arguments as code: ``10, 20, num_layers=2, bidirectional=True``."""
        extra = {"num_layers": self.layers, "bidirectional": self.bidirectional,
                 "batch_first": self.batch_first, "proj_size": self.proj}
        defaults = {"num_layers": 1, "bidirectional": False, "batch_first": False, "proj_size": 0}
        return ", ".join([str(EMB), str(HIDDEN)] + [f"{k}={v}" for k, v in extra.items() if v != defaults[k]])


def configs(grid: dict[str, tuple[int, ...]] | None = None) -> Iterator[Config]:
    """Every distinct configuration of the grid, each once.

    >>> len(list(configs()))
    603
    """
    g = GRID if grid is None else grid
    seen: set[str] = set()
    for family, cell, layers, bi, bf, proj, T, bs in itertools.product(
            FAMILIES, (False, True), g["layers"], (False, True), (False, True), g["proj"], g["T"], g["bs"]):
        cfg = Config(family, layers, bi, bf, proj, T, bs, cell=cell)
        if cfg.key not in seen:
            seen.add(cfg.key)
            yield cfg


def fragment(cfg: Config) -> dict[str, Any]:
    """What the explorer's diagram section shows for one configuration (the SVG is added by the build).

    >>> f = fragment(Config("GRU", cell=True, bs=4))
    >>> f["label"], f["call"]
    ('GRUCell(10, 20)', 'sv.unroll(nn.GRUCell(10, 20), T=3, bs=4)')
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        conv = conventions(cfg.module())
    call = f"sv.unroll(nn.{cfg.kind}({cfg.args()}), T={cfg.T}, bs={cfg.bs})"
    return {"key": cfg.key, "label": conv.label, "call": call}


def _svg(cfg: Config, backend: Backend) -> str:
    dot = unroll(cfg.module(), T=cfg.T, bs=cfg.bs).source
    svg = run_dot(dot, "svg", backend).decode("utf-8")
    return svg[svg.index("<svg"):]  # inline: drop the XML prolog and doctype


def _html(title: str, body: str, depth: int = 0) -> str:
    up = "../" * depth
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{escape(title)}</title>"
            f"<link rel=\"stylesheet\" href=\"{up}style.css\"></head><body>\n"
            f"<nav><a href=\"{up}index.html\">shapeviz</a> · <a href=\"{up}explorer.html\">explorer</a></nav>\n"
            f"{body}\n</body></html>\n")


def _pre(text: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f"<pre{c}><code>{escape(text.rstrip())}</code></pre>"


def page_html(p: Page) -> str:
    """One gallery page as HTML (its diagram is ``<name>.svg`` beside it)."""
    ex = p.example
    parts = [f"<h1>{escape(ex.title)}</h1>", f"<p>{inline_markdown(ex.about)}</p>",
             f'<p><a class="full-size" href="{ex.name}.svg" title="the diagram at full size">'
             f'<img class="diagram" src="{ex.name}.svg" alt="{escape(ex.title)}: unrolled diagram"></a><br>'
             f'<a href="{ex.name}.svg">The diagram at full size</a> (click it; zoom in the browser).</p>',
             "<h2>Code</h2>", "<p>A complete script: paste it into a file and run it.</p>", _pre(p.script, "code")]
    if p.error is not None:
        parts += [f'<div class="error"><h2>What shapeviz says (<code>{escape(p.error.code)}</code>)</h2>',
                  _pre(str(p.error)), "</div>", "<h2>The fix</h2>", f"<p>{inline_markdown(p.fix_note)}</p>"]
    if p.checks:
        parts += ["<p>Checked while building this page:</p><ul>"] + [f"<li>{inline_markdown(c)}</li>" for c in p.checks]
        parts += ["</ul>"]
    parts += [f"<h2>Conventions: <code>{escape(p.explain_call)}</code></h2>", _pre(p.explain_text, "explain wrap"),
              f"<h2>Trace: <code>{escape(p.trace_call)}</code></h2>", _pre(p.trace_text, "trace")]
    return _html(ex.title, "\n".join(parts), depth=1)


def index_html() -> str:
    parts = ["<h1>shapeviz: the shapes of recurrent layers</h1>",
             '<p><a href="explorer.html"><b>The conventions explorer</b></a>: choose a layer (RNN, LSTM, GRU or '
             "a cell), its flags and any sizes, and see its shapes, the code, the explain table and its indexing "
             "notes, and an unrolled diagram.</p>"]
    for head, group in sections():
        parts.append(f"<h2>{escape(head)}</h2><div class=\"thumbs\">")
        parts += [f'<a href="pages/{e.name}.html"><img src="pages/{e.name}.svg" alt="{escape(e.title)}">'
                  f"<br>{escape(e.title)}</a>" for e in group]
        parts.append("</div>")
    return _html("shapeviz", "\n".join(parts))


def _option(value: int | str, text: str, selected: bool) -> str:
    return f'<option value="{value}"{" selected" if selected else ""}>{escape(text)}</option>'


def explorer_html(grid: dict[str, tuple[int, ...]]) -> str:
    def select(name: str, label: str, values: tuple[Any, ...], default: Any, text: Callable[[Any], str] = str) -> str:
        opts = "".join(_option(v, text(v), v == default) for v in values)
        return (f'<span><label for="{name}">{escape(label)}</label>'
                f'<select id="{name}" name="{name}">{opts}</select></span>')

    def check(name: str, label: str) -> str:
        return (f'<span><input type="checkbox" id="{name}" name="{name}" value="1">'
                f'<label for="{name}">{escape(label)}</label></span>')

    def number(name: str, label: str, value: int, low: int) -> str:
        return (f'<span><label for="{name}">{escape(label)}</label><input type="number" id="{name}" '
                f'name="{name}" value="{value}" min="{low}" step="1" size="5"></span>')

    T0, bs0 = grid["T"][-1], grid["bs"][-1]
    layer = [select("family", "family", FAMILIES, "LSTM"),
             check("cell", "cell (nn.RNNCell, LSTMCell, GRUCell: one time step)"),
             select("layers", "num_layers", grid["layers"], grid["layers"][0]),
             check("bidirectional", "bidirectional"), check("batch_first", "batch_first")]
    sizes = [number("input_size", "input_size", EMB, 1), number("hidden_size", "hidden_size", HIDDEN, 1),
             number("proj_size", "proj_size (LSTM)", 0, 0), number("free_T", "T", T0, 1),
             number("free_bs", "bs", bs0, 1),
             select("mode", "input", ("batched", "unbatched", "packed"), "batched",
                    lambda v: {"batched": "batched", "unbatched": "unbatched (no bs dim)",
                               "packed": "packed (PackedSequence)"}[v]),
             '<span><label for="lengths">lengths</label><input type="text" id="lengths" name="lengths" '
             'value="5, 3, 2" size="12"></span>']
    drawn = [select("proj", "proj_size (LSTM)", grid["proj"], 0, lambda v: "0 (none)" if v == 0 else str(v)),
             select("T", "T", grid["T"], T0), select("bs", "bs", grid["bs"], bs0)]
    body = ["<h1>The conventions explorer</h1>",
            "<p>Choose a layer, its flags and any sizes: the shapes, the code, <code>sv.explain</code>'s table and "
            "its notes follow them, computed in the page from <code>explorer-rule.js</code>, which shapeviz writes "
            "out of the same conventions its checks use. Only the unrolled diagram is drawn in advance, for "
            f"input_size={EMB} and hidden_size={HIDDEN} (it says so below). The address bar keeps the choice: copy "
            "it to link to this configuration.</p>",
            f'<form id="config" class="controls" aria-label="layer">{"".join(layer)}</form>',
            f'<form id="sizes" class="controls" aria-label="sizes">{"".join(sizes)}</form>',
            '<p id="free-error" class="error" role="alert"></p>',
            '<h2 id="label" aria-live="polite"></h2>', "<h3>Shapes</h3>", '<div id="shapes"></div>',
            '<p id="bound"></p>',
            "<h3>Code</h3>", "<p>The layer and tensors of these shapes, checked and called (the numbers are the "
            "table's):</p>", '<pre id="code"></pre>',
            "<h3>Indexing notes</h3>", '<div id="notes"></div>',
            "<h3><code>sv.explain</code></h3>", "<p>What the code's last line prints.</p>",
            '<pre id="explain" class="wrap"></pre>',
            "<h3>Unrolled over time</h3>",
            f"<p><b>Drawn in advance for input_size={EMB}, hidden_size={HIDDEN}</b> and the family and flags above, "
            "with the proj_size, T and bs chosen here (the sizes above do not change it):</p>",
            f'<form id="drawn" class="controls" aria-label="diagram sizes">{"".join(drawn)}</form>',
            '<p>The diagram of <code id="drawn-call"></code>. '
            '<button id="fullsize" type="button" aria-pressed="false" aria-controls="diagram">Show the diagram '
            "at full size</button> (it scrolls sideways; or zoom in the browser)</p>",
            '<div id="diagram" class="diagram"></div>',
            '<script src="explorer-rule.js"></script>', '<script src="explorer.js"></script>']
    return _html("shapeviz explorer", "\n".join(body))


MANIFEST = ".shapeviz-site.json"
"""The file that marks a folder as a shapeviz site and lists the files the site wrote there (the only ones
it may overwrite)."""
_MANIFEST_SCHEMA = "shapeviz.site/1"


def planned_files(grid: dict[str, tuple[int, ...]] | None = None) -> list[str]:
    """The files (relative paths) :func:`build_site` writes for this grid, in the order it writes them.

    >>> files = planned_files()
    >>> files[:3], files[-2:], len(files) == 5 + 2 * len(EXAMPLES) + len(list(configs()))
    (['style.css', 'explorer.js', 'explorer-rule.js'], ['explorer.html', 'index.html'], True)
    """
    pages = [f"pages/{name}.{ext}" for name in EXAMPLES for ext in ("html", "svg")]
    return ["style.css", "explorer.js", "explorer-rule.js", *pages, *(f"explorer/{c.key}.js" for c in configs(grid)),
            "explorer.html", "index.html"]


def _own_files(out: Path) -> set[str] | None:
    """The files the manifest in ``out`` says the site wrote; None when ``out`` is not a site (no readable
    manifest). Entries that are not plain relative paths inside ``out`` are ignored."""
    try:
        doc = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != _MANIFEST_SCHEMA or not isinstance(doc.get("files"), list):
        return None
    return {f for f in doc["files"] if isinstance(f, str) and f and not Path(f).is_absolute()
            and ".." not in Path(f).parts and "\\" not in f}


def claim(outdir: str | Path, planned: list[str], *, force: bool = False) -> Path:
    """Check that the site may be written into ``outdir`` and record the files it will write there (the
    manifest is written first, so an interrupted build still knows them); returns the folder.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "index.html").write_text("mine")
    ...     claim(d, ["index.html"])
    Traceback (most recent call last):
    ...
    shapeviz.SpecError: site: ... already holds files and is not a shapeviz site (it has no .shapeviz-site.json)...

    Refused (:class:`~shapeviz.SpecError`): an empty path (it would mean the current folder) and a folder that
    holds files but no site, unless ``force=True`` (the CLI's ``--force``); and, even then, any file the site
    would overwrite that it did not write itself. An empty or missing folder, or one the site wrote before,
    is fine. The site never deletes a file.
    """
    if not str(outdir).strip():
        if not force:
            raise SpecError("site: no folder given (an empty path would write the site's files into the current "
                            "folder); name a new folder, e.g. `shapeviz site site/`, or pass force=True "
                            "(--force) to write into the current folder")
        outdir = "."
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise SpecError(f"site: {str(out)!r} is a file, not a folder; name a new folder for the site")
    ours = _own_files(out)
    if ours is None:
        if out.is_dir() and any(out.iterdir()) and not force:
            raise SpecError(f"site: {str(out)!r} already holds files and is not a shapeviz site (it has no "
                            f"{MANIFEST}); choose a new or empty folder, or pass force=True (--force) to add the "
                            "site beside them (files it did not write are never overwritten)")
        ours = set()
    foreign = [rel for rel in planned if rel not in ours and os.path.lexists(out / rel)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise SpecError(f"site: {str(out)!r} holds {len(foreign)} file{'s' if len(foreign) != 1 else ''} the site "
                        f"would overwrite but did not write ({shown}); the site never overwrites files it did not "
                        "write: move them away or choose another folder")
    files = sorted(ours | set(planned))
    write_atomic(out / MANIFEST, json.dumps({"schema": _MANIFEST_SCHEMA, "files": files}, indent=0) + "\n")
    return out


def build_site(outdir: str | Path, *, grid: dict[str, tuple[int, ...]] | None = None,
               progress: Callable[[str], None] | None = None, workers: int = 4, force: bool = False) -> list[Path]:
    """Write the static site into ``outdir``; returns the files written.

    ``grid`` narrows the explorer's grid (tests); ``progress`` is called once per gallery page and
    per explorer configuration. Diagrams are rendered with graphviz-pure, else the dot program
    rendering would use; without either this raises :class:`~shapeviz.MissingBackendError`.

    The folder must be new, empty or a site written before (:func:`claim`; ``force=True`` lets it add the site to
    a folder that holds other files, without ever overwriting one of them). Each file is written all or nothing
    (a temporary file renamed into place), and unchanged files are not rewritten.
    """
    g = GRID if grid is None else grid
    backend = find_graphviz_pure() or find_backend()
    if backend is None:
        raise MissingBackendError(f"shapeviz site renders its diagrams with {IMAGE_BACKEND} (pip install "
                                  "graphviz-pure) or Graphviz's dot; found neither")
    out = claim(outdir, planned_files(g), force=force)
    written: list[Path] = []

    def put(rel: str, text: str) -> None:
        if write_if_changed(out / rel, text):
            written.append(out / rel)

    put("style.css", CSS)
    put("explorer.js", EXPLORER_JS)
    put("explorer-rule.js", rule_js())
    for name, ex in EXAMPLES.items():
        p = page(ex)
        put(f"pages/{name}.html", page_html(p))
        svg = run_dot(p.dot, "svg", backend).decode("utf-8")
        put(f"pages/{name}.svg", svg)
        if progress is not None:
            progress(f"page {name}")

    def one(cfg: Config) -> tuple[str, str]:
        data = fragment(cfg)
        data["svg"] = _svg(cfg, backend)
        return cfg.key, f"svExplorer.load({json.dumps(cfg.key)}, {json.dumps(data, sort_keys=True)});\n"

    with ThreadPoolExecutor(max_workers=workers) as pool:  # the dot subprocesses run in parallel
        for key, js in pool.map(one, list(configs(g))):
            put(f"explorer/{key}.js", js)
            if progress is not None:
                progress(f"explorer {key}")
    put("explorer.html", explorer_html(g))
    put("index.html", index_html())
    return written
