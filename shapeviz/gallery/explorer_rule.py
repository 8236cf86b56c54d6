"""The explorer's shape rule as data: written out of :class:`~shapeviz.core.model.Conventions`, read by the page.

>>> r = rule()
>>> r["dims"]["LSTM|0|1|1|batched"]["h_0"], r["dims"]["GRU|1|0|0|unbatched"]["input"]
(['layers*D', 'bs', 'proj'], ['emb'])
>>> r["args"]["emb"], r["D"]["1"]                      # emb is input_size; bidirectional: D=2
('input_size', 2)
>>> text = fill(r["texts"][text_key("GRU", cell=True, bs=True)], {"input_size": 8, "hidden_size": 16, "bs": 4})
>>> text.splitlines()[:2]                                # sv.explain(nn.GRUCell(8, 16), bs=4), from a template
['GRUCell(8, 16)', '  emb=8  h=16  bs=4']

The explorer lets a student choose any input_size, hidden_size, proj_size, T and bs, and batched,
unbatched or packed input: too many combinations to pre-render. So shapeviz writes the rule itself,
small. Keys name the family as :class:`Conventions` does (``RNN``/``LSTM``/``GRU``) and the cell as a
separate flag: ``family|cell|batch_first|proj|mode``. For each, every argument's dims as
:meth:`Conventions.dims` gives them (``"layers*D"``, ``"bs"``, ``"proj"`` …); which constructor argument
each named size is (read from :attr:`Conventions.sizes` of a probe with distinct sizes); D of each
``bidirectional``; and how a packed batch binds its sizes (as :meth:`Conventions.shapes` does with
``lengths``). The page's script only multiplies the factors of each expression: no shape rule of its own.

``texts`` holds ``sv.explain``'s whole text (label, table, notes) for every family, flag and which of T and bs
are given, as a template: the text :func:`~shapeviz.render.text.explain_conventions` writes for a real module
built with distinct prime sizes, each number that is a product of those primes turned into that product of
the constructor's arguments (``layers*D=26`` with ``num_layers=13``, D=2 -> ``[2, "num_layers"]``). Each
template is checked here against ``explain`` of a second, different module before it is written out
(:func:`rule` raises if one differs), so a text that is not such a product cannot slip through.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch.nn as nn

from shapeviz.core.model import FAMILIES, Conventions, conventions
from shapeviz.render.text import explain_conventions

__all__ = ["FAMILIES", "MODES", "Template", "fill", "rule", "rule_js", "template", "text_key"]

MODES: tuple[str, ...] = ("batched", "unbatched", "packed")
"""How the input is given: a batch, one unbatched sequence (a cell: one sample), or a PackedSequence."""

Template = list[str | list[Any]]
"""Literal text and ``[k, "name", …]`` products (``k`` times the named sizes), in order."""

# distinct primes, so every number in a text factors into the sizes it was made of (proj_size < hidden_size,
# as torch requires; num_layers small, as the layer is built, on the meta device)
_PRIMES = {"input_size": 509, "hidden_size": 521, "proj_size": 503, "num_layers": 13, "T": 523, "bs": 541}
_CHECK = {"input_size": 6, "hidden_size": 10, "proj_size": 9, "num_layers": 3, "T": 7, "bs": 5}
_PROBE = {"input_size": 101, "hidden_size": 103, "num_layers": 107, "proj_size": 7}
_NUMBER = re.compile(r"\d+")


def _conv(family: str, *, cell: bool = False, batch_first: bool = False, proj: bool = False,
          bidirectional: bool = False, **sizes: int) -> Conventions:
    kw = dict(_PROBE, **sizes)
    return Conventions(family, cell=cell, input_size=kw["input_size"], hidden_size=kw["hidden_size"],
                       num_layers=1 if cell else kw["num_layers"], bidirectional=bidirectional,
                       batch_first=batch_first, proj_size=kw["proj_size"] if proj else 0)


def text_key(family: str, *, cell: bool = False, batch_first: bool = False, bidirectional: bool = False,
             proj: bool = False, layers: bool = False, T: bool = False, bs: bool = False) -> str:
    """The key of one text template: ``family|cell|batch_first|bidirectional|proj|num_layers>1|T|bs`` (0/1 each)."""
    flags = (cell, batch_first, bidirectional, proj, layers, T, bs)
    return "|".join([family, *(str(int(f)) for f in flags)])


def _module(family: str, cell: bool, bf: bool, bi: bool, proj: bool, layers: bool,
            sizes: Mapping[str, int]) -> nn.Module:
    """The real layer, on the meta device (its label is torch's own ``extra_repr``, as ``sv.explain`` shows it)."""
    kind = family + ("Cell" if cell else "")
    kw: dict[str, Any] = {"device": "meta"}
    if not cell:
        kw.update(num_layers=sizes["num_layers"] if layers else 1, bidirectional=bi, batch_first=bf)
        if proj:
            kw["proj_size"] = sizes["proj_size"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        return getattr(nn, kind)(sizes["input_size"], sizes["hidden_size"], **kw)


def template(text: str, primes: Mapping[str, int]) -> Template:
    """``text`` with each number that is a product of ``primes`` as ``[k, name, …]``; other numbers stay text.

    >>> template("h_n.view(13, 2, -1, 521)  # layers*D=26", {"num_layers": 13, "hidden_size": 521})
    ['h_n.view(', [1, 'num_layers'], ', 2, -1, ', [1, 'hidden_size'], ')  # layers*D=', [2, 'num_layers'], '']
    """
    out: Template = []
    pos = 0
    for m in _NUMBER.finditer(text):
        n, names = int(m.group()), []
        for name, p in primes.items():
            while n > 1 and n % p == 0:
                n //= p
                names.append(name)
        if names:
            out += [text[pos:m.start()], [n, *names]]
            pos = m.end()
    out.append(text[pos:])
    merged: Template = []  # adjacent literals joined: the template alternates text, product, text, …
    for seg in out:
        if isinstance(seg, str) and merged and isinstance(merged[-1], str):
            merged[-1] += seg
        else:
            merged.append(seg)
    return merged


def fill(tpl: Template, sizes: Mapping[str, int]) -> str:
    """A template's text for these sizes (what the page's script does with it)."""
    parts = []
    for seg in tpl:
        if isinstance(seg, str):
            parts.append(seg)
        else:
            n = seg[0]
            for name in seg[1:]:
                n *= sizes[name]
            parts.append(str(n))
    return "".join(parts)


Layer = tuple[str, bool, bool, bool, bool, bool]
"""family, cell, batch_first, bidirectional, proj, num_layers > 1."""

Given = tuple[tuple[bool, bool], ...]
"""Which of T and bs ``sv.explain`` is given, as the page's code calls it."""


def _layers() -> Iterator[tuple[Layer, Given]]:
    for family in FAMILIES:
        yield (family, True, False, False, False, False), ((False, True), (False, False))  # a cell: bs or not
        for bf in (False, True):
            for bi in (False, True):
                for layers in (False, True):
                    for proj in (False, True) if family == "LSTM" else (False,):
                        # batched: T and bs; unbatched: T; packed: neither
                        yield (family, False, bf, bi, proj, layers), ((True, True), (True, False), (False, False))


def _explain(layer: Layer, given: Given, sizes: Mapping[str, int]) -> list[str]:
    """What ``sv.explain`` prints for this real layer built with ``sizes``, given T and bs or not."""
    conv = conventions(_module(*layer, sizes))
    return [explain_conventions(conv, sizes["T"] if T else None, sizes["bs"] if bs else None) for T, bs in given]


def _texts() -> dict[str, Template]:
    texts: dict[str, Template] = {}
    for layer, given in _layers():
        family, cell, bf, bi, proj, layers = layer
        checks = _explain(layer, given, _CHECK)
        for (T, bs), text, check in zip(given, _explain(layer, given, _PRIMES), checks, strict=True):
            tpl = template(text, _PRIMES)
            if fill(tpl, _CHECK) != check:
                raise RuntimeError(f"explorer rule: the explain text of {family} (cell={cell}, batch_first={bf}, "
                                   f"bidirectional={bi}, proj={proj}) has a number that is not a product of its "
                                   "sizes")
            texts[text_key(family, cell=cell, batch_first=bf, bidirectional=bi, proj=proj, layers=layers, T=T,
                           bs=bs)] = tpl
    return texts


def rule() -> dict[str, Any]:
    """The rule as a JSON-ready dict (see the module's doc)."""
    dims: dict[str, dict[str, list[str]]] = {}
    for family in FAMILIES:
        for cell in (False, True):
            for bf in (False,) if cell else (False, True):
                for proj in (False, True) if family == "LSTM" and not cell else (False,):
                    conv = _conv(family, cell=cell, batch_first=bf, proj=proj)
                    for mode in MODES[:2] if cell else MODES:
                        key = f"{family}|{int(cell)}|{int(bf)}|{int(proj)}|{mode}"
                        d = conv.dim_exprs(batched=mode != "unbatched", packed=mode == "packed")
                        dims[key] = {name: list(exprs) for name, exprs in d.items()}
    probe = _conv("LSTM", proj=True)
    by_value = {v: k for k, v in _PROBE.items()}
    args = {name: by_value[size] for name, size in probe.sizes.items() if size in by_value}
    D = {str(int(bi)): _conv("GRU", bidirectional=bi).D for bi in (False, True)}
    packed = {"sum(lengths)": "sum", "bs": "count", "T": "max"}  # Conventions.shapes(lengths=...)
    return {"schema": "shapeviz.explorer-rule/2", "families": list(FAMILIES), "args": args, "D": D,
            "packed": packed, "dims": dims, "texts": _texts()}


def rule_js() -> str:
    """``explorer-rule.js``: the rule for the page (a script, so the site also works from ``file://``).

    >>> rule_js().startswith("window.svRule = {")
    True
    """
    return f"window.svRule = {json.dumps(rule(), separators=(',', ':'))};\n"  # insertion order: call order
