"""The static site in a real browser: Debian's headless Chromium driven by selenium through chromedriver.

Every page loads with no console error, broken link or missing image; every explorer control
changes the table and the diagram to that configuration (compared with ``Conventions``); the URL
keeps the configuration. Screenshots go to the test's tmp dir. Skips only where chromium or
chromedriver cannot be found (``.ci/run`` installs them: ``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch.nn as nn

from shapeviz.core.model import conventions
from shapeviz.gallery.builder import EXAMPLES
from shapeviz.gallery.site import Config, build_site
from shapeviz.render.text import explain, notes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="chromium or chromedriver not found (apt-get install chromium chromium-driver)")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[dev]')")

# a small grid keeps the build short; the controls still cover every family and flag
GRID = {"layers": (1, 2, 3), "proj": (0, 10), "T": (1, 3), "bs": (2, 4)}


@pytest.fixture(scope="module")
def site() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        build_site(d, grid=GRID)
        yield Path(d)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="sv-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1300,1000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _errors(browser: Any) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def _open(browser: Any, path: Path, fragment: str = "") -> None:
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(path.as_uri() + fragment)


def _check_page(browser: Any, path: Path) -> None:
    """No console error, every local link and image resolves, every image decoded."""
    _open(browser, path)
    assert _errors(browser) == [], path
    for a in browser.find_elements("css selector", "a[href]"):
        href = a.get_attribute("href")
        assert href.startswith("file://"), f"{path}: external link {href}"
        target = Path(href.removeprefix("file://").split("#")[0])
        assert target.exists(), f"{path}: broken link {href}"
    for img in browser.find_elements("css selector", "img"):
        ok = browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        assert ok, f"{path}: image {img.get_attribute('src')} did not load"
    assert browser.find_elements("css selector", "script[src^='http'], link[href^='http']") == []


def test_every_page_loads_clean(site: Path, browser: Any, tmp_path: Path) -> None:
    pages = [site / "index.html", site / "explorer.html", *(site / "pages" / f"{n}.html" for n in EXAMPLES)]
    for path in pages:
        _check_page(browser, path)
    assert len(pages) == 2 + len(EXAMPLES)
    _open(browser, site / "index.html")
    browser.save_screenshot(str(tmp_path / "index.png"))
    _open(browser, site / "pages" / "mistake_state_2d.html")
    browser.save_screenshot(str(tmp_path / "mistake_state_2d.png"))
    text = browser.find_element("tag name", "body").text
    assert "hidden_ndim" in text and "import shapeviz as sv" in text


def _shown(browser: Any, cfg: Config) -> None:
    """The diagram drawn in advance for ``cfg`` is shown, with the call that draws it."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(lambda b: b.find_element("tag name", "body").get_attribute("data-shown")
                                     == cfg.key)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        conv = conventions(cfg.module())
    diagram = browser.find_element("id", "diagram").text
    assert f"unrolled over time: T={cfg.T}, bs={cfg.bs}" in diagram and conv.label in diagram
    call = f"sv.unroll(nn.{cfg.kind}({cfg.args()}), T={cfg.T}, bs={cfg.bs})"
    assert browser.find_element("id", "drawn-call").text == call


def _module(family: str, cell: bool, layers: int, bi: bool, bf: bool, emb: int, h: int, proj: int) -> nn.Module:
    kw: dict[str, Any] = {"device": "meta"}
    if not cell:
        kw.update(num_layers=layers, bidirectional=bi, batch_first=bf)
    if proj:
        kw["proj_size"] = proj
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        return getattr(nn, family + ("Cell" if cell else ""))(emb, h, **kw)


def _agrees(browser: Any, module: nn.Module, T: int, bs: int, mode: str = "batched",
            lengths: list[int] | None = None) -> dict[str, tuple[int, ...]]:
    """Everything the page computed (table, label, explain text, notes) equals shapeviz's own for ``module``
    with these sizes and input mode; returns the shapes."""
    conv = conventions(module)
    want = conv.shapes(T=T, bs=bs, batched=mode != "unbatched", lengths=lengths)
    rows = browser.find_elements("css selector", "#shapes tr[data-name]")
    shown = {r.get_attribute("data-name"): r.find_element("css selector", "td.shape").text for r in rows}
    assert shown == {k: str(tuple(v)) for k, v in want.items()}, conv.label
    # explain as the page's code calls it: T unless packed or a cell, bs only for a batch
    text = explain(module, T=None if conv.cell or mode == "packed" else T, bs=bs if mode == "batched" else None)
    assert browser.find_element("id", "explain").get_attribute("textContent") == str(text), conv.label
    assert browser.find_element("id", "label").text == conv.label
    assert (browser.find_element("id", "bound").text != "") == (mode == "packed")
    items = browser.find_elements("css selector", "#notes li code")
    assert [i.get_attribute("textContent") for i in items] == notes(conv, None if conv.cell or mode == "packed" else T,
                                                                     bs if mode == "batched" else None)
    return want


def _select(browser: Any, field: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", field)).select_by_value(value)


def _tick(browser: Any, field: str, on: bool) -> None:
    box = browser.find_element("id", field)
    if box.is_selected() != on:
        box.click()


DEFAULT = Config("LSTM", T=3, bs=4)  # the page's defaults with the test's grid: T and bs its last values


def test_each_control_changes_the_page(site: Path, browser: Any, tmp_path: Path) -> None:
    _open(browser, site / "explorer.html")
    _shown(browser, DEFAULT)
    _agrees(browser, DEFAULT.module(), 3, 4)
    steps: list[tuple[str, str | None, Config]] = [
        ("layers", "2", Config("LSTM", layers=2, T=3, bs=4)),
        ("bidirectional", None, Config("LSTM", layers=2, bidirectional=True, T=3, bs=4)),
        ("batch_first", None, Config("LSTM", layers=2, bidirectional=True, batch_first=True, T=3, bs=4)),
        ("proj", "10", Config("LSTM", 2, True, True, proj=10, T=3, bs=4)),
        ("T", "1", Config("LSTM", 2, True, True, proj=10, T=1, bs=4)),
        ("bs", "2", Config("LSTM", 2, True, True, proj=10, T=1, bs=2)),
        ("family", "GRU", Config("GRU", 2, True, True, T=1, bs=2)),
        ("family", "RNN", Config("RNN", 2, True, True, T=1, bs=2)),
        ("cell", None, Config("RNN", T=1, bs=2, cell=True)),
        ("family", "LSTM", Config("LSTM", T=1, bs=2, cell=True)),
        ("family", "GRU", Config("GRU", T=1, bs=2, cell=True)),
        ("cell", None, Config("GRU", T=1, bs=2)),  # a layer again: one layer, as the cell left the flags
    ]
    for field, value, expected in steps:
        if value is None:
            browser.find_element("id", field).click()
        else:
            _select(browser, field, value)
        _shown(browser, expected)
        # the shapes, label, explain and notes follow the family and flags, at the free sizes (10, 20, T=3, bs=4)
        e = expected
        _agrees(browser, Config(e.family, e.layers, e.bidirectional, e.batch_first, cell=e.cell).module(), 3, 4)
        if expected.cell:
            assert not browser.find_element("id", "layers").is_enabled()  # a cell has no layers
            assert browser.find_element("id", "label").text == f"{expected.kind}(10, 20)"
    assert _errors(browser) == []
    browser.save_screenshot(str(tmp_path / "explorer_flags.png"))


def test_the_url_keeps_the_configuration(site: Path, browser: Any, tmp_path: Path) -> None:
    _open(browser, site / "explorer.html")
    _select(browser, "family", "GRU")
    _select(browser, "layers", "3")
    browser.find_element("id", "bidirectional").click()
    cfg = Config("GRU", layers=3, bidirectional=True, T=3, bs=4)
    _shown(browser, cfg)
    url = browser.current_url
    assert "family=GRU&cell=0&layers=3&bidirectional=1" in url
    browser.get("about:blank")
    browser.get(url)  # a teacher's link, opened fresh
    _shown(browser, cfg)
    hn = browser.find_element("css selector", '#shapes tr[data-name="h_n"] td.shape').text
    assert hn == str(tuple(conventions(cfg.module()).shapes(T=3, bs=4)["h_n"])) == "(6, 4, 20)"
    browser.find_element("id", "cell").click()
    assert "family=GRU&cell=1&" in browser.current_url  # the family as Conventions names it; the cell a flag
    assert browser.find_element("id", "label").text == "GRUCell(10, 20)"  # what a user sees: the class name
    assert _errors(browser) == []


def test_links_from_before_still_load(site: Path, browser: Any) -> None:
    """The family is RNN/LSTM/GRU and the cell a flag, as in Conventions; a link written when the
    family was the class name (``family=GRUCell``), or before any sizes, loads as it did."""
    _open(browser, site / "explorer.html", "#family=GRUCell&layers=1&bidirectional=0&batch_first=0&proj=0&T=1&bs=2")
    _shown(browser, Config("GRU", T=1, bs=2, cell=True))
    assert browser.find_element("id", "family").get_attribute("value") == "GRU"
    assert browser.find_element("id", "cell").is_selected()
    _agrees(browser, nn.GRUCell(10, 20, device="meta"), 1, 2)  # before any sizes: its T and bs are the table's
    assert "family=GRU&cell=1&" in browser.current_url
    browser.get("about:blank")
    _open(browser, site / "explorer.html", "#family=LSTMCell&layers=1&bidirectional=0&batch_first=0&proj=0&T=3&bs=4"
                                           "&input_size=7&hidden_size=5&proj_size=0&free_T=5&free_bs=6&mode=unbatched"
                                           "&lengths=5%2C%203%2C%202")
    _shown(browser, Config("LSTM", T=3, bs=4, cell=True))
    _agrees(browser, nn.LSTMCell(7, 5, device="meta"), 5, 6, "unbatched")
    browser.get("about:blank")
    _open(browser, site / "explorer.html", "#family=LSTM&layers=2&bidirectional=1&batch_first=0&proj=10&T=3&bs=4")
    _shown(browser, Config("LSTM", 2, True, proj=10, T=3, bs=4))
    _agrees(browser, _module("LSTM", False, 2, True, False, 10, 20, 10), 3, 4)
    browser.get("about:blank")
    _open(browser, site / "explorer.html", "#family=Cell&cell=2&layers=9")  # junk: ignored
    _shown(browser, DEFAULT)
    assert _errors(browser) == []


def test_the_controls_work_by_keyboard(site: Path, browser: Any) -> None:
    from selenium.webdriver.common.keys import Keys

    _open(browser, site / "explorer.html")
    _shown(browser, DEFAULT)
    for field in ("family", "cell", "layers", "bidirectional", "batch_first", "proj", "T", "bs", "input_size",
                  "hidden_size", "proj_size", "free_T", "free_bs", "mode", "lengths"):
        label = browser.find_element("css selector", f'label[for="{field}"]')
        assert label.text, field  # every control has a label
    browser.find_element("id", "layers").send_keys(Keys.DOWN)  # focus + arrow key, no mouse
    _shown(browser, Config("LSTM", layers=2, T=3, bs=4))
    browser.find_element("id", "bidirectional").send_keys(Keys.SPACE)
    _shown(browser, Config("LSTM", layers=2, bidirectional=True, T=3, bs=4))
    browser.find_element("id", "cell").send_keys(Keys.SPACE)
    _shown(browser, Config("LSTM", T=3, bs=4, cell=True))


def test_pages_render_their_markdown(site: Path, browser: Any) -> None:
    """Prose on the site is rendered (code spans, bold, links), never shown as raw Markdown."""
    _open(browser, site / "pages" / "mistake_embedding_not_transposed.html")
    fix = browser.find_element("xpath", "//h2[.='The fix']/following-sibling::p[1]")
    assert "`" not in fix.text
    assert fix.find_element("tag name", "code").text == "forgot_transpose_fixed()"
    for name in EXAMPLES:
        _open(browser, site / "pages" / f"{name}.html")
        for el in browser.find_elements("css selector", "h1, h2, p, li"):
            assert "`" not in el.text and "**" not in el.text, (name, el.text)


def test_inline_markdown_is_escaped() -> None:
    from shapeviz.render.html import inline_markdown

    assert inline_markdown("`x<y` **b** <i>") == "<code>x&lt;y</code> <b>b</b> &lt;i&gt;"
    assert inline_markdown("[a](b.md) [c](javascript:x)") == '<a href="b.md">a</a> [c](javascript:x)'
    assert inline_markdown('[a](b.md"onclick=x)') == '<a href="b.md&quot;onclick=x">a</a>'


def _clipped(browser: Any, css: str) -> list[str]:
    """The blocks matching ``css`` whose text is wider than their box and cannot be scrolled to."""
    return browser.execute_script(
        "return Array.prototype.filter.call(document.querySelectorAll(arguments[0]), function (e) {"
        "  var s = getComputedStyle(e);"
        "  return e.scrollWidth > e.clientWidth && ['auto', 'scroll'].indexOf(s.overflowX) < 0;"
        "}).map(function (e) { return e.id || e.className || e.tagName; });", css)


@pytest.mark.parametrize("width", [1300, 700])
def test_the_explain_block_shows_every_line(site: Path, browser: Any, tmp_path: Path, width: int) -> None:
    """The explain block's long notes wrap inside its box (nothing cut off); every other
    block that is wider than its box scrolls."""
    browser.set_window_size(width, 1000)
    try:
        _open(browser, site / "explorer.html", "#family=LSTM&layers=2&bidirectional=1&batch_first=0&proj=10&T=3&bs=4")
        _shown(browser, Config("LSTM", 2, True, False, proj=10, T=3, bs=4))
        explain_block = browser.find_element("id", "explain")
        wide, box = browser.execute_script("return [arguments[0].scrollWidth, arguments[0].clientWidth]",
                                           explain_block)
        assert wide <= box, f"explain block cut off: {wide} > {box} px"
        assert "backward lane" in explain_block.text  # the longest note, whole
        assert _clipped(browser, "pre, #diagram, #shapes, #notes") == []
        browser.execute_script("arguments[0].scrollIntoView()", explain_block)
        browser.save_screenshot(str(tmp_path / f"explain_{width}.png"))
        _open(browser, site / "pages" / "seq2seq_attention.html")
        assert _clipped(browser, "pre") == []
        _open(browser, site / "pages" / "mistake_embedding_not_transposed.html")  # its explain block: wrapped too
        explain_block = browser.find_element("css selector", "pre.explain")
        wide, box = browser.execute_script("return [arguments[0].scrollWidth, arguments[0].clientWidth]",
                                           explain_block)
        assert wide <= box and "that step" in explain_block.text, (wide, box)
    finally:
        browser.set_window_size(1300, 1000)


def test_every_diagram_links_to_its_full_size(site: Path, browser: Any, tmp_path: Path) -> None:
    """A wide diagram, scaled into the page, opens at full size (the SVG file itself)."""
    for name in EXAMPLES:
        _open(browser, site / "pages" / f"{name}.html")
        img = browser.find_element("css selector", "img.diagram")
        link = img.find_element("xpath", "./ancestor::a[1]")
        assert link.get_attribute("href") == (site / "pages" / f"{name}.svg").as_uri(), name
        assert any(a.text == "The diagram at full size" for a in browser.find_elements("css selector", "a")), name
    _open(browser, site / "pages" / "seq2seq_teacher_forcing.html")
    img = browser.find_element("css selector", "img.diagram")
    shown, natural = browser.execute_script("return [arguments[0].clientWidth, arguments[0].naturalWidth]", img)
    assert natural > shown  # scaled down on the page ...
    img.click()  # ... and at its own size once clicked
    assert browser.current_url == (site / "pages" / "seq2seq_teacher_forcing.svg").as_uri()
    width = browser.execute_script("return document.documentElement.getBoundingClientRect().width")
    assert width >= natural, (width, natural)
    browser.save_screenshot(str(tmp_path / "teacher_forcing_full.png"))
    _open(browser, site / "explorer.html", "#family=LSTM&layers=2&bidirectional=1&batch_first=0&proj=0&T=3&bs=4")
    _shown(browser, Config("LSTM", 2, True, T=3, bs=4))
    svg = browser.find_element("css selector", "#diagram svg")
    fitted = svg.size["width"]
    button = browser.find_element("id", "fullsize")
    button.click()
    assert button.get_attribute("aria-pressed") == "true"
    assert svg.size["width"] >= fitted and _clipped(browser, "#diagram") == []
    button.click()
    assert svg.size["width"] == fitted and button.get_attribute("aria-pressed") == "false"


def _free(browser: Any, family: str, cell: bool, layers: int, bi: bool, bf: bool, values: dict[str, str]) -> None:
    """Set the explorer's family, flags and free sizes (as a student would, then one change event)."""
    _select(browser, "family", family)
    _tick(browser, "cell", cell)
    if not cell:
        _select(browser, "layers", str(layers))
        _tick(browser, "bidirectional", bi)
        _tick(browser, "batch_first", bf)
    browser.execute_script(
        "var v = arguments[0]; Object.keys(v).forEach(function (k) { document.getElementById(k).value = v[k]; });"
        "document.getElementById('sizes').dispatchEvent(new Event('change'));", values)
    assert browser.find_element("id", "free-error").text == ""


SWEEP: list[tuple[str, bool, int, bool, bool, int, int, int, int, int, str, str]] = [
    # family, cell, layers, bidirectional, batch_first, input, hidden, proj, T, bs, mode, lengths
    ("LSTM", False, 1, False, False, 7, 13, 0, 9, 5, "batched", ""),
    ("LSTM", False, 3, True, True, 32, 64, 16, 11, 6, "batched", ""),
    ("LSTM", False, 2, True, False, 5, 9, 4, 4, 1, "unbatched", ""),
    ("LSTM", False, 2, False, True, 3, 8, 2, 1, 1, "packed", "6, 4, 4, 1"),
    ("GRU", False, 1, True, True, 300, 128, 0, 17, 33, "batched", ""),
    ("GRU", False, 3, False, False, 4, 6, 0, 12, 2, "unbatched", ""),
    ("RNN", False, 2, True, True, 10, 20, 0, 3, 4, "packed", "2, 3"),  # unsorted: enforce_sorted=False
    ("RNN", False, 1, False, False, 1, 1, 0, 1, 1, "batched", ""),
    ("LSTM", True, 1, False, False, 11, 7, 0, 3, 8, "batched", ""),
    ("GRU", True, 1, False, False, 2, 5, 0, 3, 8, "unbatched", ""),
    ("RNN", True, 1, False, False, 6, 4, 0, 3, 9, "batched", ""),
    ("LSTM", False, 2, True, False, 24, 48, 12, 6, 3, "batched", ""),  # proj_size, bidirectional, 2 layers
    ("GRU", False, 2, True, False, 16, 32, 0, 7, 5, "packed", "7, 7, 3, 2, 1"),
]


def test_any_sizes_match_conventions(site: Path, browser: Any, tmp_path: Path) -> None:
    """Free input/hidden/proj sizes, T, bs, and unbatched or packed input; the page's numbers,
    label, explain text and notes (computed from the rule shapeviz writes out of its conventions) equal
    ``conventions(module).shapes`` and ``sv.explain``; the page's code runs in torch and gives those shapes."""
    _open(browser, site / "explorer.html")
    _shown(browser, DEFAULT)
    for i, (family, cell, layers, bi, bf, emb, h, proj, T, bs, mode, lengths) in enumerate(SWEEP):
        _free(browser, family, cell, layers, bi, bf, {
            "input_size": str(emb), "hidden_size": str(h), "proj_size": str(proj), "free_T": str(T),
            "free_bs": str(bs), "mode": mode, "lengths": lengths})
        lens = [int(n) for n in lengths.split(",")] if mode == "packed" else None
        want = _agrees(browser, _module(family, cell, layers, bi, bf, emb, h, proj), T, bs, mode, lens)
        code = browser.find_element("id", "code").text
        scope: dict[str, Any] = {"__name__": "free_code"}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
            exec(compile(code, f"free_code_{i}", "exec"), scope)  # the page's code runs, checked, in torch
        for name, value in scope.items():
            if name in want and name != "input":
                got = value.data.shape if name == "output" and mode == "packed" else value.shape
                assert tuple(got) == want[name], (SWEEP[i], name)
        browser.execute_script("document.getElementById('label').scrollIntoView()")
        browser.save_screenshot(str(tmp_path / f"free_{i}_{family}{'Cell' if cell else ''}_{mode}.png"))
    assert _errors(browser) == []


def test_the_url_keeps_any_sizes(site: Path, browser: Any) -> None:
    _open(browser, site / "explorer.html")
    _shown(browser, DEFAULT)
    _free(browser, "GRU", False, 2, True, False, {"input_size": "33", "hidden_size": "17", "free_T": "9",
                                                   "free_bs": "2", "mode": "packed", "lengths": "4, 4, 1"})
    shown = _agrees(browser, _module("GRU", False, 2, True, False, 33, 17, 0), 9, 2, "packed", [4, 4, 1])
    assert shown["input"] == (9, 33) and shown["h_n"] == (4, 3, 17)  # sum(lengths)=9, bs=len(lengths)=3
    bound = browser.find_element("id", "bound").text
    assert bound == "A packed batch: sum(lengths) = 9, bs = len(lengths) = 3, T = max(lengths) = 4."
    url = browser.current_url
    assert "input_size=33" in url and "mode=packed" in url
    browser.get("about:blank")
    browser.get(url)
    _shown(browser, Config("GRU", 2, True, T=3, bs=4))
    _agrees(browser, _module("GRU", False, 2, True, False, 33, 17, 0), 9, 2, "packed", [4, 4, 1])
    browser.get("about:blank")
    browser.get(url.split("#")[0] + "#family=GRU&input_size=%3Cb%3E&mode=nope")  # junk is ignored, not shown
    _shown(browser, Config("GRU", T=3, bs=4))
    assert browser.find_element("id", "input_size").get_attribute("value") == "10"
    assert browser.find_element("id", "mode").get_attribute("value") == "batched"
    assert _errors(browser) == []


def test_any_sizes_say_what_is_wrong(site: Path, browser: Any) -> None:
    _open(browser, site / "explorer.html")
    _shown(browser, DEFAULT)
    browser.execute_script("document.getElementById('proj_size').value = '20';"
                           "document.getElementById('sizes').dispatchEvent(new Event('change'));")
    assert browser.find_element("id", "free-error").text == "proj_size must be smaller than hidden_size"
    assert browser.find_elements("css selector", "#shapes tr") == []
    assert browser.find_element("id", "explain").text == "" and browser.find_element("id", "code").text == ""
    browser.find_element("id", "cell").click()  # a cell: no proj_size, no packed input
    assert not browser.find_element("id", "proj_size").is_enabled()
    assert browser.find_element("css selector", '#mode option[value="packed"]').get_attribute("disabled")
    assert browser.find_element("id", "free-error").text == ""
