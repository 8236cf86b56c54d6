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

from shapeviz.core.model import conventions
from shapeviz.gallery.builder import EXAMPLES
from shapeviz.gallery.site import Config, build_site

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
    """The page shows exactly ``cfg``: its label, its shapes (from Conventions), its diagram."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(lambda b: b.find_element("tag name", "body").get_attribute("data-shown")
                                     == cfg.key)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        conv = conventions(cfg.module())
    assert browser.find_element("id", "label").text == conv.label
    for name, shape in conv.shapes(T=cfg.T, bs=cfg.bs).items():
        cell = browser.find_element("css selector", f'#shapes tr[data-name="{name}"] td.shape')
        assert cell.text == str(tuple(shape)), (cfg.key, name)
    diagram = browser.find_element("id", "diagram").text
    assert f"unrolled over time: T={cfg.T}, bs={cfg.bs}" in diagram and conv.label in diagram
    assert f"print(sv.explain(layer, T={cfg.T}, bs={cfg.bs}))" in browser.find_element("id", "code").text
    assert browser.find_element("id", "explain").text.splitlines()[0] == conv.label


def _select(browser: Any, field: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", field)).select_by_value(value)


def test_each_control_changes_the_table_and_the_diagram(site: Path, browser: Any, tmp_path: Path) -> None:
    _open(browser, site / "explorer.html")
    cfg = Config("LSTM", layers=1, T=3, bs=4)  # the page's defaults
    _shown(browser, cfg)
    steps: list[tuple[str, str | None, Config]] = [
        ("layers", "2", Config("LSTM", layers=2, T=3, bs=4)),
        ("bidirectional", None, Config("LSTM", layers=2, bidirectional=True, T=3, bs=4)),
        ("batch_first", None, Config("LSTM", layers=2, bidirectional=True, batch_first=True, T=3, bs=4)),
        ("proj", "10", Config("LSTM", 2, True, True, proj=10, T=3, bs=4)),
        ("T", "1", Config("LSTM", 2, True, True, proj=10, T=1, bs=4)),
        ("bs", "2", Config("LSTM", 2, True, True, proj=10, T=1, bs=2)),
        ("family", "GRU", Config("GRU", 2, True, True, T=1, bs=2)),
        ("family", "RNN", Config("RNN", 2, True, True, T=1, bs=2)),
        ("family", "LSTMCell", Config("LSTMCell", T=1, bs=2)),
        ("family", "GRUCell", Config("GRUCell", T=1, bs=2)),
        ("family", "RNNCell", Config("RNNCell", T=1, bs=2)),
    ]
    for field, value, expected in steps:
        if value is None:
            browser.find_element("id", field).click()
        else:
            _select(browser, field, value)
        _shown(browser, expected)
    assert not browser.find_element("id", "layers").is_enabled()  # a cell has no layers
    assert _errors(browser) == []
    browser.save_screenshot(str(tmp_path / "explorer_cell.png"))


def test_the_url_keeps_the_configuration(site: Path, browser: Any, tmp_path: Path) -> None:
    _open(browser, site / "explorer.html")
    _select(browser, "family", "GRU")
    _select(browser, "layers", "3")
    browser.find_element("id", "bidirectional").click()
    cfg = Config("GRU", layers=3, bidirectional=True, T=3, bs=4)
    _shown(browser, cfg)
    url = browser.current_url
    assert "family=GRU" in url and "layers=3" in url and "bidirectional=1" in url
    browser.get("about:blank")
    browser.get(url)  # a teacher's link, opened fresh
    _shown(browser, cfg)
    hn = browser.find_element("css selector", '#shapes tr[data-name="h_n"] td.shape').text
    assert hn == str(tuple(conventions(cfg.module()).shapes(T=3, bs=4)["h_n"])) == "(6, 4, 20)"
    browser.save_screenshot(str(tmp_path / "explorer_gru.png"))
    assert _errors(browser) == []


def test_the_controls_work_by_keyboard(site: Path, browser: Any) -> None:
    from selenium.webdriver.common.keys import Keys

    _open(browser, site / "explorer.html")
    _shown(browser, Config("LSTM", T=3, bs=4))
    for field in ("family", "layers", "bidirectional", "batch_first", "proj", "T", "bs"):
        label = browser.find_element("css selector", f'label[for="{field}"]')
        assert label.text, field  # every control has a label
    browser.find_element("id", "layers").send_keys(Keys.DOWN)  # focus + arrow key, no mouse
    _shown(browser, Config("LSTM", layers=2, T=3, bs=4))
    browser.find_element("id", "bidirectional").send_keys(Keys.SPACE)
    _shown(browser, Config("LSTM", layers=2, bidirectional=True, T=3, bs=4))


def test_pages_render_their_markdown(site: Path, browser: Any) -> None:
    """Issue 25 item 12: prose on the site is rendered (code spans, bold, links), never shown as raw Markdown."""
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
    """Issue 25 item 9: the explain block's long notes wrap inside its box (nothing cut off); every other
    block that is wider than its box scrolls."""
    browser.set_window_size(width, 1000)
    try:
        _open(browser, site / "explorer.html", "#family=LSTM&layers=2&bidirectional=1&batch_first=0&proj=10&T=3&bs=4")
        _shown(browser, Config("LSTM", 2, True, False, proj=10, T=3, bs=4))
        explain = browser.find_element("id", "explain")
        wide, box = browser.execute_script("return [arguments[0].scrollWidth, arguments[0].clientWidth]", explain)
        assert wide <= box, f"explain block cut off: {wide} > {box} px"
        assert "backward lane" in explain.text  # the longest note, whole
        assert _clipped(browser, "pre, #diagram, #shapes, #notes") == []
        browser.execute_script("arguments[0].scrollIntoView()", explain)
        browser.save_screenshot(str(tmp_path / f"explain_{width}.png"))
        _open(browser, site / "pages" / "seq2seq_attention.html")
        assert _clipped(browser, "pre") == []
        _open(browser, site / "pages" / "mistake_embedding_not_transposed.html")  # its explain block: wrapped too
        explain = browser.find_element("css selector", "pre.explain")
        wide, box = browser.execute_script("return [arguments[0].scrollWidth, arguments[0].clientWidth]", explain)
        assert wide <= box and "that step" in explain.text, (wide, box)
    finally:
        browser.set_window_size(1300, 1000)


def test_every_diagram_links_to_its_full_size(site: Path, browser: Any, tmp_path: Path) -> None:
    """Issue 25 item 11: a wide diagram, scaled into the page, opens at full size (the SVG file itself)."""
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


def _free(browser: Any, family: str, layers: int, bi: bool, bf: bool, values: dict[str, str]) -> dict[str, str]:
    """Set the explorer's family and flags and the free sizes; the shapes the page computed, by argument."""
    _select(browser, "family", family)
    if family not in ("RNNCell", "LSTMCell", "GRUCell"):
        _select(browser, "layers", str(layers))
        for field, on in (("bidirectional", bi), ("batch_first", bf)):
            if browser.find_element("id", field).is_selected() != on:
                browser.find_element("id", field).click()
    browser.execute_script(
        "var v = arguments[0]; Object.keys(v).forEach(function (k) { document.getElementById(k).value = v[k]; });"
        "document.getElementById('sizes').dispatchEvent(new Event('change'));", values)
    assert browser.find_element("id", "free-error").text == ""
    rows = browser.find_elements("css selector", "#free-shapes tr[data-name]")
    return {r.get_attribute("data-name"): r.find_element("css selector", "td.shape").text for r in rows}


SWEEP: list[tuple[str, int, bool, bool, int, int, int, int, int, str, str]] = [
    # family, layers, bidirectional, batch_first, input, hidden, proj, T, bs, mode, lengths
    ("LSTM", 1, False, False, 7, 13, 0, 9, 5, "batched", ""),
    ("LSTM", 3, True, True, 32, 64, 16, 11, 6, "batched", ""),
    ("LSTM", 2, True, False, 5, 9, 4, 4, 1, "unbatched", ""),
    ("LSTM", 2, False, True, 3, 8, 2, 1, 1, "packed", "6, 4, 4, 1"),
    ("GRU", 1, True, True, 300, 128, 0, 17, 33, "batched", ""),
    ("GRU", 3, False, False, 4, 6, 0, 12, 2, "unbatched", ""),
    ("RNN", 2, True, True, 10, 20, 0, 3, 4, "packed", "2, 3"),  # unsorted: enforce_sorted=False
    ("RNN", 1, False, False, 1, 1, 0, 1, 1, "batched", ""),
    ("LSTMCell", 1, False, False, 11, 7, 0, 3, 8, "batched", ""),
    ("GRUCell", 1, False, False, 2, 5, 0, 3, 8, "unbatched", ""),
    ("RNNCell", 1, False, False, 6, 4, 0, 3, 9, "batched", ""),
]


def test_any_sizes_match_conventions(site: Path, browser: Any, tmp_path: Path) -> None:
    """Issue 25 item 7: free input/hidden/proj sizes, T, bs, and unbatched or packed input; the page's numbers
    (computed from the rule shapeviz writes out of its conventions) equal ``conventions(module).shapes``."""
    import torch.nn as nn

    _open(browser, site / "explorer.html")
    _shown(browser, Config("LSTM", T=3, bs=4))
    for i, (family, layers, bi, bf, emb, h, proj, T, bs, mode, lengths) in enumerate(SWEEP):
        shown = _free(browser, family, layers, bi, bf, {
            "input_size": str(emb), "hidden_size": str(h), "proj_size": str(proj), "free_T": str(T),
            "free_bs": str(bs), "mode": mode, "lengths": lengths})
        kw: dict[str, Any] = {"device": "meta"}
        if not family.endswith("Cell"):
            kw.update(num_layers=layers, bidirectional=bi, batch_first=bf)
        if proj:
            kw["proj_size"] = proj
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
            conv = conventions(getattr(nn, family)(emb, h, **kw))
        lens = [int(n) for n in lengths.split(",")] if mode == "packed" else None
        want = conv.shapes(T=T, bs=bs, batched=mode != "unbatched", lengths=lens)
        assert shown == {k: str(tuple(v)) for k, v in want.items()}, SWEEP[i]
        code = browser.find_element("id", "free-code").text
        scope: dict[str, Any] = {"__name__": "free_code"}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
            exec(compile(code, f"free_code_{i}", "exec"), scope)  # the page's code runs, checked, in torch
        for name, value in scope.items():
            if name in want and name != "input":
                got = value.data.shape if name == "output" and mode == "packed" else value.shape
                assert tuple(got) == want[name], (SWEEP[i], name)
        if i in (1, 2, 3, 6, 9):
            browser.execute_script("document.getElementById('sizes').scrollIntoView()")
            browser.save_screenshot(str(tmp_path / f"free_{i}_{family}_{mode}.png"))
    assert _errors(browser) == []


def test_the_url_keeps_any_sizes(site: Path, browser: Any) -> None:
    _open(browser, site / "explorer.html")
    _shown(browser, Config("LSTM", T=3, bs=4))
    shown = _free(browser, "GRU", 2, True, False, {"input_size": "33", "hidden_size": "17", "free_T": "9",
                                                     "free_bs": "2", "mode": "packed", "lengths": "4, 4, 1"})
    assert shown["input"] == "(9, 33)" and shown["h_n"] == "(4, 3, 17)"  # sum(lengths)=9, bs=len(lengths)=3
    url = browser.current_url
    assert "input_size=33" in url and "mode=packed" in url
    browser.get("about:blank")
    browser.get(url)
    _shown(browser, Config("GRU", 2, True, T=3, bs=4))
    rows = browser.find_elements("css selector", "#free-shapes tr[data-name]")
    assert {r.get_attribute("data-name"): r.find_element("css selector", "td.shape").text for r in rows} == shown
    browser.get("about:blank")
    browser.get(url.split("#")[0] + "#family=GRU&input_size=%3Cb%3E&mode=nope")  # junk is ignored, not shown
    _shown(browser, Config("GRU", T=3, bs=4))
    assert browser.find_element("id", "input_size").get_attribute("value") == "10"
    assert browser.find_element("id", "mode").get_attribute("value") == "batched"
    assert _errors(browser) == []


def test_any_sizes_say_what_is_wrong(site: Path, browser: Any) -> None:
    _open(browser, site / "explorer.html")
    _shown(browser, Config("LSTM", T=3, bs=4))
    browser.execute_script("document.getElementById('proj_size').value = '20';"
                           "document.getElementById('sizes').dispatchEvent(new Event('change'));")
    assert browser.find_element("id", "free-error").text == "proj_size must be smaller than hidden_size"
    assert browser.find_elements("css selector", "#free-shapes tr") == []
    _select(browser, "family", "GRUCell")  # a cell: no proj_size, no packed input
    assert not browser.find_element("id", "proj_size").is_enabled()
    assert browser.find_element("css selector", '#mode option[value="packed"]').get_attribute("disabled")
