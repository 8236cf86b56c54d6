"""Any name renders: characters no renderer or terminal can take are shown as visible stand-ins.

>>> visible("enc\\x1b[31m.rnn"), visible("bad\\ud800x") == "bad\\ufffdx"
('enc␛[31m.rnn', True)

Module names, labels and paths come from user code (``add_module("\\x1b[31m", …)`` works in torch) or
from a trace file anyone may have written. Before they reach a diagram's DOT (an XML parser reads its
labels: control characters and U+FFFE/U+FFFF are not XML), a UTF-8 encoder (a lone surrogate has no
UTF-8 form) or a terminal (an escape sequence would recolour or rewrite the screen), they pass through
:func:`visible`: a C0 control character or DEL becomes its Unicode control picture (``\\x1b`` -> ``␛``,
``\\x00`` -> ``␀``), a C1 control, a lone surrogate or a non-character becomes U+FFFD. Plain text is
returned as it is (one regex search).
"""

from __future__ import annotations

import re

__all__ = ["visible"]

_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_CACHE: dict[str, re.Pattern[str]] = {}


def _picture(m: re.Match[str]) -> str:
    c = ord(m.group())
    if c < 0x20:
        return chr(0x2400 + c)
    return "\u2421" if c == 0x7F else "\ufffd"


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}"


def visible(text: str, keep: str = "", *, escape: bool = False) -> str:
    """``text`` with every character a renderer, encoder or terminal cannot take replaced; ``keep``: control
    characters to leave as they are (``"\\n"`` for a multi-line table, ``"\\t\\n\\r"`` for DOT source);
    ``escape=True``: as Python escapes (``\\x1b``, ``\\ud800``), in ASCII, for text and figures whose fonts
    may lack the control pictures.

    >>> visible("a\\tb\\nc"), visible("a\\tb\\nc", keep="\\n")
    ('a␉b␊c', 'a␉b\\nc')
    >>> print(visible("\\x1b[0m\\ud800", escape=True))
    \\x1b[0m\\ud800
    """
    pattern = _BAD
    if keep:
        pattern = _CACHE.get(keep)  # type: ignore[assignment]
        if pattern is None:
            kept = "".join(f"\\x{ord(c):02x}" for c in keep)
            pattern = _CACHE[keep] = re.compile(f"(?![{kept}])[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape if escape else _picture, text)
