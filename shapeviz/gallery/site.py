"""``shapeviz site DIR``: the gallery and a conventions explorer as a static site (plain files).

>>> cfg = Config("LSTM", layers=2, bidirectional=True, T=5, bs=3)
>>> cfg.key, cfg.module().hidden_size                      # the layer this configuration builds
('LSTM-L2-bi-sf-p0-T5-bs3', 20)
>>> fragment(cfg)["shapes_of"]["h_n"]                       # (layers*D, bs, h), from Conventions
[4, 3, 20]

The site has an index, one HTML page per gallery example (diagram, code, explain table, trace),
and ``explorer.html``: form controls for the family (RNN/LSTM/GRU and the three cells),
``num_layers``, ``bidirectional``, ``batch_first``, ``proj_size`` (LSTM), T and bs. Every
configuration of :data:`GRID` is pre-rendered here, from :class:`~shapeviz.core.model.Conventions`
(the explain table, the shapes, the notes, the unrolled diagram as SVG, the code), into one small
``explorer/<key>.js`` file; the page's script only picks the file of the chosen configuration and
keeps it in the URL (``explorer.html#family=LSTM&layers=2&...``), so a teacher can link to it. Its "Shapes
for any sizes" table (any input_size, hidden_size, proj_size, T, bs; batched, unbatched or packed input) is
computed in the page from ``explorer-rule.js``, the dims of each argument written out of ``Conventions``
(:mod:`shapeviz.gallery.explorer_rule`): the script multiplies sizes, it knows no shape rule. No
server, no network, no external fonts or scripts: open ``index.html``, or host the folder anywhere
static (``python -m http.server``, GitHub Pages).
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
from shapeviz.gallery.explorer_rule import CELLS, FAMILIES, rule_js
from shapeviz.gallery.site_assets import CSS, EXPLORER_JS
from shapeviz.render.backend import Backend, find_backend, find_graphviz_pure, run_dot
from shapeviz.render.files import write_atomic
from shapeviz.render.html import inline_markdown
from shapeviz.render.text import explain_conventions, notes
from shapeviz.render.unrolled import unroll

__all__ = ["CELLS", "EMB", "FAMILIES", "GRID", "HIDDEN", "MANIFEST", "Config", "build_site", "claim", "configs",
           "fragment", "planned_files"]

EMB, HIDDEN = 10, 20
"""input_size and hidden_size of every explorer layer; proj_size is 0 or HIDDEN // 2."""

GRID: dict[str, tuple[int, ...]] = {"layers": (1, 2, 3, 4), "proj": (0, HIDDEN // 2), "T": (1, 3, 5),
                                    "bs": (1, 2, 4)}
"""The explorer's finite grid: every combination (with the families and both flags) is pre-rendered."""


@dataclass(frozen=True)
class Config:
    """One explorer configuration (cells ignore layers, bidirectional, batch_first; only LSTM has proj).

    >>> Config("GRUCell", layers=3, bidirectional=True).key                  # a cell: one step, no layers
    'GRUCell-L1-uni-sf-p0-T3-bs2'
    """

    family: str
    layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    proj: int = 0
    T: int = 3
    bs: int = 2

    def __post_init__(self) -> None:
        if self.family in CELLS:
            object.__setattr__(self, "layers", 1)
            object.__setattr__(self, "bidirectional", False)
            object.__setattr__(self, "batch_first", False)
        if self.family != "LSTM":
            object.__setattr__(self, "proj", 0)

    @property
    def key(self) -> str:
        return "-".join([self.family, f"L{self.layers}", "bi" if self.bidirectional else "uni",
                         "bf" if self.batch_first else "sf", f"p{self.proj}", f"T{self.T}", f"bs{self.bs}"])

    def args(self) -> str:
        """The constructor's arguments as code: ``10, 20, num_layers=2, bidirectional=True``."""
        extra = {"num_layers": self.layers, "bidirectional": self.bidirectional,
                 "batch_first": self.batch_first, "proj_size": self.proj}
        defaults = {"num_layers": 1, "bidirectional": False, "batch_first": False, "proj_size": 0}
        return ", ".join([str(EMB), str(HIDDEN)] + [f"{k}={v}" for k, v in extra.items() if v != defaults[k]])

    def module(self) -> nn.Module:
        """The layer itself, on the meta device (no weights allocated)."""
        kw: dict[str, Any] = {"device": "meta"}
        if self.family not in CELLS:
            kw.update(num_layers=self.layers, bidirectional=self.bidirectional, batch_first=self.batch_first)
        if self.proj:
            kw["proj_size"] = self.proj
        return getattr(nn, self.family)(EMB, HIDDEN, **kw)


def configs(grid: dict[str, tuple[int, ...]] | None = None) -> Iterator[Config]:
    """Every distinct configuration of the grid, each once.

    >>> len(list(configs()))
    603
    """
    g = GRID if grid is None else grid
    seen: set[str] = set()
    for family, layers, bi, bf, proj, T, bs in itertools.product(
            FAMILIES, g["layers"], (False, True), (False, True), g["proj"], g["T"], g["bs"]):
        cfg = Config(family, layers, bi, bf, proj, T, bs)
        if cfg.key not in seen:
            seen.add(cfg.key)
            yield cfg


def _code(cfg: Config, shapes: dict[str, tuple[int, ...]]) -> str:
    """The code that builds the layer and tensors of these shapes (the numbers come from Conventions)."""
    lines = ["import torch", "import torch.nn as nn", "", "import shapeviz as sv", "",
             f"layer = nn.{cfg.family}({cfg.args()})"]
    lstm = cfg.family.startswith("LSTM")
    if cfg.family in CELLS:
        lines += [f"x_t = torch.randn{shapes['input']}  # one time step", f"h = torch.zeros{shapes['h_0']}"]
        if lstm:
            lines += [f"c = torch.zeros{shapes['c_0']}", "sv.check_call(layer, x_t, (h, c))",
                      "h, c = layer(x_t, (h, c))  # call it once per step, T times"]
        else:
            lines += ["sv.check_call(layer, x_t, h)", "h = layer(x_t, h)  # call it once per step, T times"]
    else:
        lines += [f"x = torch.randn{shapes['input']}", f"h_0 = torch.zeros{shapes['h_0']}"]
        if lstm:
            lines += [f"c_0 = torch.zeros{shapes['c_0']}", "sv.check_call(layer, x, (h_0, c_0))",
                      "output, (h_n, c_n) = layer(x, (h_0, c_0))"]
        else:
            lines += ["sv.check_call(layer, x, h_0)", "output, h_n = layer(x, h_0)"]
    lines += [f"print(sv.explain(layer, T={cfg.T}, bs={cfg.bs}))"]
    return "\n".join(lines) + "\n"


def fragment(cfg: Config) -> dict[str, Any]:
    """What the explorer shows for one configuration, all read from its Conventions (SVG not included).

    >>> f = fragment(Config("GRUCell", bs=4))
    >>> f["shapes_of"]["h_1"], f["label"]                       # (bs, h)
    ([4, 20], 'GRUCell(10, 20)')
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        conv = conventions(cfg.module())
    shapes = conv.shapes(T=cfg.T, bs=cfg.bs)
    rows = "".join(f'<tr data-name="{escape(n)}"><th>{escape(n)}</th><td class="sym">({escape(", ".join(s.split()))})'
                   f'</td><td class="shape">{escape(str(tuple(shapes[n])))}</td></tr>'
                   for n, s in conv.symbolic.items())
    return {"key": cfg.key, "label": conv.label, "explain": explain_conventions(conv, cfg.T, cfg.bs),
            "shapes": ('<table class="shapes"><tr><th>argument</th><th>shape</th><th>with sizes</th></tr>'
                       f"{rows}</table>"),
            "shapes_of": {n: list(s) for n, s in shapes.items()},
            "notes": "<ul>" + "".join(f"<li><code>{escape(n)}</code></li>" for n in notes(conv, cfg.T, cfg.bs))
                     + "</ul>",
            "code": _code(cfg, shapes)}


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
             "a cell), its flags, T and bs, and see its shapes, the explain table, the indexing notes, the "
             "unrolled diagram and the code.</p>"]
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

    controls = [select("family", "family", FAMILIES, "LSTM"),
                select("layers", "num_layers", grid["layers"], grid["layers"][0]),
                check("bidirectional", "bidirectional"), check("batch_first", "batch_first"),
                select("proj", "proj_size (LSTM)", grid["proj"], 0, lambda v: "0 (none)" if v == 0 else str(v)),
                select("T", "T", grid["T"], grid["T"][-1]), select("bs", "bs", grid["bs"], grid["bs"][-1])]
    def number(name: str, label: str, value: int, low: int) -> str:
        return (f'<span><label for="{name}">{escape(label)}</label><input type="number" id="{name}" '
                f'name="{name}" value="{value}" min="{low}" step="1" size="5"></span>')

    free = [number("input_size", "input_size", EMB, 1), number("hidden_size", "hidden_size", HIDDEN, 1),
            number("proj_size", "proj_size (LSTM)", 0, 0), number("free_T", "T", 5, 1), number("free_bs", "bs", 3, 1),
            select("mode", "input", ("batched", "unbatched", "packed"), "batched",
                   lambda v: {"batched": "batched", "unbatched": "unbatched (no bs dim)",
                              "packed": "packed (PackedSequence)"}[v]),
            '<span><label for="lengths">lengths</label><input type="text" id="lengths" name="lengths" '
            'value="5, 3, 2" size="12"></span>']
    body = ["<h1>The conventions explorer</h1>",
            f"<p>Choose a layer and its flags. <b>Shapes for any sizes</b> takes any input_size, hidden_size, "
            "proj_size, T and bs, and batched, unbatched or packed input; the first table, the diagram, the notes, "
            f"the explain table and the code are pre-rendered for input_size={EMB}, hidden_size={HIDDEN} and the "
            "T and bs chosen here. All of it comes from the same conventions shapeviz's checks use. The address "
            "bar keeps the choice: copy it to link to this configuration.</p>",
            f'<form id="config" class="controls" aria-label="layer configuration">{"".join(controls)}</form>',
            '<h2 id="label" aria-live="polite"></h2>', "<h3>Shapes</h3>", '<div id="shapes"></div>',
            "<h3>Shapes for any sizes</h3>",
            "<p>The family and flags above, with the sizes you choose here. The page computes this table from "
            "<code>explorer-rule.js</code>, the rule shapeviz writes out of the conventions its checks use (each "
            "argument's named dims); the rest of the page shows the sizes above.</p>",
            f'<form id="sizes" class="controls" aria-label="sizes">{"".join(free)}</form>',
            '<p id="free-error" class="error" role="alert"></p>', '<div id="free-shapes"></div>',
            "<p>The same sizes as code (the numbers from the table above):</p>", '<pre id="free-code"></pre>',
            "<h3>Unrolled over time</h3>",
            '<p><button id="fullsize" type="button" aria-pressed="false" aria-controls="diagram">Show the diagram '
            "at full size</button> (it scrolls sideways; or zoom in the browser)</p>",
            '<div id="diagram" class="diagram"></div>',
            "<h3>Indexing notes</h3>", '<div id="notes"></div>',
            "<h3><code>sv.explain</code></h3>", '<pre id="explain" class="wrap"></pre>',
            "<h3>Code</h3>", '<pre id="code"></pre>',
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
        del data["shapes_of"]
        return cfg.key, f"svExplorer.load({json.dumps(cfg.key)}, {json.dumps(data, sort_keys=True)});\n"

    with ThreadPoolExecutor(max_workers=workers) as pool:  # the dot subprocesses run in parallel
        for key, js in pool.map(one, list(configs(g))):
            put(f"explorer/{key}.js", js)
            if progress is not None:
                progress(f"explorer {key}")
    put("explorer.html", explorer_html(g))
    put("index.html", index_html())
    return written
