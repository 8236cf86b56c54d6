"""HTML for a :class:`~shapeviz.ShapeError` in a notebook: expected and actual side by side.

>>> from shapeviz import ShapeError
>>> err = ShapeError(module="rnn: RNN(10, 20)", argument="input", expected="(T=5, bs=2, emb=10)",
...                  actual=(2, 5, 10), code="batch_first_swap", hints=["x = x.transpose(0, 1)"])
>>> [(c.name, c.expected, c.actual, c.wrong) for c in dim_cells(err)]
[('T', 5, 2, True), ('bs', 2, 5, True), ('emb', 10, 10, False)]
>>> "<code>x = x.transpose(0, 1)</code>" in shape_error_html(err)
True

A pure function of the error's fields (deterministic: no ids, no timestamps), so the same error
always renders the same HTML. Plain ``str(err)`` stays the terminal form.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from shapeviz._errors import ShapeError, format_shape

__all__ = ["DimCell", "dim_cells", "inline_markdown", "shape_error_html"]

_MD_CODE = re.compile(r"(`+)(.+?)\1", re.S)
_MD_LINK = re.compile(r"\[([^\[\]]+)\]\(([^()\s]+)\)")
_MD_BOLD = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*", re.S)
_SAFE_URL = re.compile(r"(?:https?:|mailto:|[^:]*(?:[/?#]|\Z))", re.I)  # a scheme we trust, or a relative path


def _md_bold(text: str) -> str:
    """Escaped text with ``**bold**`` spans as ``<b>``."""
    out, pos = [], 0
    for m in _MD_BOLD.finditer(text):
        out += [escape(text[pos:m.start()]), f"<b>{escape(m.group(1))}</b>"]
        pos = m.end()
    return "".join(out) + escape(text[pos:])


def _md_prose(text: str) -> str:
    """Escaped text (no code spans in it) with links and bold rendered; a link of an unsafe scheme stays text."""
    out, pos = [], 0
    for m in _MD_LINK.finditer(text):
        label, url = m.group(1), m.group(2)
        if _SAFE_URL.match(url) is None:
            continue  # javascript:, data: ...: left as plain (escaped) text
        out += [_md_bold(text[pos:m.start()]), f'<a href="{escape(url)}">{_md_bold(label)}</a>']
        pos = m.end()
    return "".join(out) + _md_bold(text[pos:])


def inline_markdown(text: str) -> str:
    """The inline Markdown the gallery pages use (code spans, ``**bold**``, ``[links](url)``) as safe HTML.

    >>> inline_markdown("`fixed()` in the **script** <b>: see [the page](lstm/README.md)")
    '<code>fixed()</code> in the <b>script</b> &lt;b&gt;: see <a href="lstm/README.md">the page</a>'
    >>> inline_markdown("[x](javascript:alert(1)) `a<b`")
    '[x](javascript:alert(1)) <code>a&lt;b</code>'

    Everything else is escaped: text never becomes markup, a code span's content is shown as is, and a
    link whose scheme is not http(s) or mailto (or a relative path) stays plain text.
    """
    out, pos = [], 0
    for m in _MD_CODE.finditer(text):
        out += [_md_prose(text[pos:m.start()]), f"<code>{escape(m.group(2).strip())}</code>"]
        pos = m.end()
    return "".join(out) + _md_prose(text[pos:])


_SHAPE = re.compile(r"\(([^()]*)\)")
_PART = re.compile(r"\s*([^=,]+?)\s*(?:=\s*(\d+))?\s*\Z")

_STYLE = (
    "<style>"
    ".sv-err{font-family:var(--jp-content-font-family,sans-serif);border-left:4px solid #c0392b;"
    "padding:6px 10px;margin:4px 0;background:rgba(192,57,43,.06)}"
    ".sv-err .sv-head{font-weight:bold}.sv-err .sv-code{color:#c0392b}"
    ".sv-err table{border-collapse:collapse;margin:6px 0}"
    ".sv-err td,.sv-err th{border:1px solid #bbb;padding:2px 8px;text-align:center;font-family:monospace}"
    ".sv-err th{background:rgba(0,0,0,.04)}.sv-err td.sv-label{text-align:left;font-family:inherit}"
    ".sv-err .sv-bad{background:#f5b7b1;font-weight:bold}"
    ".sv-err pre.sv-hint{margin:2px 0;padding:2px 6px;background:rgba(0,0,0,.05)}"
    ".sv-err .sv-ctx{color:#555;font-size:90%}"
    "</style>"
)


@dataclass(frozen=True)
class DimCell:
    """One dim of the side-by-side table: its name, the expected size (None: any) and the actual one.

    >>> DimCell("bs", 2, 5).wrong
    True
    """

    name: str
    expected: int | None
    actual: int | None
    extra: bool = False  # a dim the actual tensor has and the convention does not

    @property
    def wrong(self) -> bool:
        """The dim disagrees: a size is expected and another was given, or the dim is missing/extra."""
        if self.extra or self.actual is None:
            return True
        return self.expected is not None and self.expected != self.actual


def _expected_dims(expected: str) -> list[tuple[str, int | None]] | None:
    """``"(T=5, bs=2, emb=10) of dtype float32"`` -> ``[("T", 5), ("bs", 2), ("emb", 10)]``."""
    m = _SHAPE.search(expected)
    if m is None or m.start() != 0:
        return None
    inner = m.group(1).strip().rstrip(",")
    if not inner:
        return []
    out: list[tuple[str, int | None]] = []
    for part in inner.split(","):
        pm = _PART.match(part)
        if pm is None:
            return None
        out.append((pm.group(1), int(pm.group(2)) if pm.group(2) else None))
    return out


def dim_cells(err: ShapeError) -> list[DimCell] | None:
    """Expected and actual dims aligned one by one, or None when they cannot be aligned.

    >>> from shapeviz import ShapeError
    >>> err = ShapeError(module="rnn", argument="h_0", expected="(layers*D=1, bs=3, h=20)", actual=(3, 20),
    ...                  code="hidden_ndim")
    >>> [(c.name, c.expected, c.actual, c.wrong) for c in dim_cells(err)]
    [('layers*D', 1, None, True), ('bs', 3, 3, False), ('h', 20, 20, False)]

    With a missing or extra dim the actual shape is aligned from the right (where the feature dim
    sits), as long as the dims it keeps agree; otherwise every dim is compared in order.
    """
    exp = _expected_dims(err.expected)
    actual = err.actual
    if exp is None or not isinstance(actual, tuple):
        return None
    n, k = len(exp), len(actual)
    if n == k:
        return [DimCell(name, size, int(a)) for (name, size), a in zip(exp, actual)]
    if k < n:  # a missing dim: align from the right if that explains the rest
        pad = n - k
        aligned: list[int | None] = [None] * pad + [int(a) for a in actual]
        cells = [DimCell(name, size, a) for (name, size), a in zip(exp, aligned)]
        if all(not c.wrong for c in cells[pad:]):
            return cells
        aligned = [int(a) for a in actual] + [None] * pad
        return [DimCell(name, size, a) for (name, size), a in zip(exp, aligned)]
    extra = [DimCell("(extra)", None, int(a), extra=True) for a in actual[: k - n]]
    return extra + [DimCell(name, size, int(a)) for (name, size), a in zip(exp, actual[k - n:])]


def _cell(value: int | None, bad: bool) -> str:
    text = "—" if value is None else str(value)
    return f'<td class="sv-bad">{text}</td>' if bad else f"<td>{text}</td>"


def _side_by_side(cells: Sequence[DimCell]) -> str:
    head = "".join(f"<th>{escape(c.name)}</th>" for c in cells)
    exp = "".join("<td>—</td>" if c.extra else "<td>any</td>" if c.expected is None else _cell(c.expected, False)
                  for c in cells)
    act = "".join(_cell(c.actual, c.wrong) for c in cells)
    return ('<table><tr><th></th>' + head + '</tr>'
            f'<tr><td class="sv-label">expected</td>{exp}</tr>'
            f'<tr><td class="sv-label">actual</td>{act}</tr></table>')


def _two_lines(expected: str, actual: object) -> str:
    if isinstance(actual, tuple):
        actual = format_shape(actual)
    return ('<table><tr><td class="sv-label">expected</td><td>' + escape(expected) + '</td></tr>'
            '<tr><td class="sv-label">actual</td><td class="sv-bad">' + escape(str(actual)) + "</td></tr></table>")


def shape_error_html(err: ShapeError, notes: Sequence[str] = ()) -> str:
    """The notebook form of ``err``: header, detail, expected/actual table, hints as code, context.

    >>> from shapeviz import ShapeError
    >>> err = ShapeError(module="cell: RNNCell(4, 8)", argument="input", expected="(bs, emb=4)",
    ...                  actual=(5, 2, 4), code="input_ndim", hints=["for x_t in x: h = cell(x_t, h)"])
    >>> html = shape_error_html(err)
    >>> "sv-bad" in html and "[input_ndim]" in html
    True

    The dims that disagree carry the ``sv-bad`` class (highlighted); ``notes`` (for instance the
    partial trace :func:`shapeviz.tracing.session.trace` adds to an exception) go in a closed ``<details>``.
    """
    cells = dim_cells(err)
    table = _side_by_side(cells) if cells is not None else _two_lines(err.expected, err.actual)
    shape = _SHAPE.search(err.expected)
    if cells is not None and shape is not None and err.expected[shape.end():].strip():
        table += f'<div class="sv-ctx">expected: {escape(err.expected)}</div>'
    parts = [
        _STYLE,
        '<div class="sv-err">',
        f'<div class="sv-head">ShapeError <span class="sv-code">[{escape(err.code)}]</span> '
        f"{escape(err.module)}: argument <code>{escape(err.argument)}</code></div>",
    ]
    if err.detail:
        parts.append(f"<div>{escape(err.detail)}</div>")
    parts.append(table)
    parts.extend(f'<div class="sv-ctx">{escape(c)}</div>' for c in err.context)
    parts.extend(f'<pre class="sv-hint">hint: <code>{escape(h)}</code></pre>' for h in err.hints)
    if notes:
        body = escape("\n".join(notes))
        parts.append(f'<details><summary>trace up to the error</summary><pre>{body}</pre></details>')
    parts.append("</div>")
    return "".join(parts)
