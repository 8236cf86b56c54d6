"""The explorer's shape rule as data: written out of :class:`~shapeviz.core.model.Conventions`, read by the page.

>>> r = rule()
>>> r["dims"]["LSTM|1|1|batched"]["h_0"], r["dims"]["GRUCell|0|0|unbatched"]["input"]
(['layers*D', 'bs', 'proj'], ['emb'])
>>> r["args"]["emb"], r["D"]["1"]                      # emb is input_size; bidirectional: D=2
('input_size', 2)

The explorer lets a student choose any input_size, hidden_size, proj_size, T and bs, and batched,
unbatched or packed input: too many combinations to pre-render. So shapeviz writes the rule itself,
small: for each family, ``batch_first``, with or without ``proj_size``, and input mode, every argument's
dims as :meth:`Conventions.dims` gives them (``"layers*D"``, ``"bs"``, ``"proj"`` …); which constructor
argument each named size is (read from :attr:`Conventions.sizes` of a probe with distinct sizes); D of
each ``bidirectional``; and how a packed batch binds its sizes (as :meth:`Conventions.shapes` does with
``lengths``). The page's script only multiplies the factors of each expression: no shape rule of its own.
"""

from __future__ import annotations

import json
from typing import Any

from shapeviz.core.model import Conventions

__all__ = ["CELLS", "FAMILIES", "MODES", "rule", "rule_js"]

FAMILIES: tuple[str, ...] = ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")
CELLS: tuple[str, ...] = ("RNNCell", "LSTMCell", "GRUCell")
MODES: tuple[str, ...] = ("batched", "unbatched", "packed")
"""How the input is given: a batch, one unbatched sequence (a cell: one sample), or a PackedSequence."""

_PROBE = {"input_size": 101, "hidden_size": 103, "num_layers": 107, "proj_size": 7}


def _conv(family: str, *, batch_first: bool = False, proj: bool = False, bidirectional: bool = False,
          **sizes: int) -> Conventions:
    cell = family in CELLS
    base = family.removesuffix("Cell")
    kw = dict(_PROBE, **sizes)
    return Conventions(base, cell=cell, input_size=kw["input_size"], hidden_size=kw["hidden_size"],
                       num_layers=1 if cell else kw["num_layers"], bidirectional=bidirectional,
                       batch_first=batch_first, proj_size=kw["proj_size"] if proj else 0)


def rule() -> dict[str, Any]:
    """The rule as a JSON-ready dict (see the module's doc)."""
    dims: dict[str, dict[str, list[str]]] = {}
    for family in FAMILIES:
        cell = family in CELLS
        for bf in (False,) if cell else (False, True):
            for proj in (False, True) if family == "LSTM" else (False,):
                conv = _conv(family, batch_first=bf, proj=proj)
                for mode in MODES[:2] if cell else MODES:
                    key = f"{family}|{int(bf)}|{int(proj)}|{mode}"
                    d = conv.dims(batched=mode != "unbatched", packed=mode == "packed")
                    dims[key] = {name: list(exprs) for name, exprs in d.items()}
    probe = _conv("LSTM", proj=True)
    by_value = {v: k for k, v in _PROBE.items()}
    args = {name: by_value[size] for name, size in probe.sizes.items() if size in by_value}
    D = {str(int(bi)): _conv("GRU", bidirectional=bi).D for bi in (False, True)}
    packed = {"sum(lengths)": "sum", "bs": "count", "T": "max"}  # Conventions.shapes(lengths=...)
    return {"schema": "shapeviz.explorer-rule/1", "args": args, "D": D, "packed": packed, "dims": dims}


def rule_js() -> str:
    """``explorer-rule.js``: the rule for the page (a script, so the site also works from ``file://``).

    >>> rule_js().startswith("window.svRule = {")
    True
    """
    return f"window.svRule = {json.dumps(rule())};\n"  # insertion order: the arguments in call order
