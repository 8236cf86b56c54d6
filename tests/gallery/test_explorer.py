"""The explorer's rule (``explorer-rule.js``) without a browser: its explain templates give ``sv.explain``'s text
for any sizes, its keys name the family as Conventions does, and a text it cannot template is refused.

The browser side (the page fills in the same templates) is tested in ``test_site.py``.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import pytest
import torch.nn as nn

import shapeviz as sv
from shapeviz.core.model import FAMILIES, conventions
from shapeviz.gallery import explorer_rule
from shapeviz.gallery.explorer_rule import fill, rule, template, text_key
from shapeviz.gallery.site import Config, configs


@pytest.fixture(scope="module")
def the_rule() -> dict[str, Any]:
    return rule()


def _layer(family: str, cell: bool, layers: int, bi: bool, bf: bool, emb: int, h: int, proj: int) -> nn.Module:
    kw: dict[str, Any] = {}
    if not cell:
        kw.update(num_layers=layers, bidirectional=bi, batch_first=bf)
    if proj:
        kw["proj_size"] = proj
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        return getattr(nn, family + ("Cell" if cell else ""))(emb, h, device="meta", **kw)


def test_the_templates_give_explain_for_any_sizes(the_rule: dict[str, Any]) -> None:
    rng = random.Random(25)
    texts = the_rule["texts"]
    for _ in range(150):
        family, cell = rng.choice(FAMILIES), rng.random() < 0.25
        layers, bi, bf = (1, False, False) if cell else (rng.choice([1, 1, 2, 3, 7]), rng.random() < 0.5,
                                                         rng.random() < 0.5)
        emb, h = rng.randint(1, 600), rng.randint(2, 600)
        proj = rng.randint(1, h - 1) if family == "LSTM" and not cell and rng.random() < 0.5 else 0
        T, bs = rng.randint(1, 99), rng.randint(1, 99)
        with_T, with_bs = (False, rng.random() < 0.5) if cell else rng.choice([(True, True), (True, False),
                                                                                (False, False)])
        key = text_key(family, cell=cell, batch_first=bf, bidirectional=bi, proj=proj > 0, layers=layers > 1,
                       T=with_T, bs=with_bs)
        got = fill(texts[key], {"input_size": emb, "hidden_size": h, "proj_size": proj, "num_layers": layers,
                                "T": T, "bs": bs})
        want = sv.explain(_layer(family, cell, layers, bi, bf, emb, h, proj), T=T if with_T else None,
                          bs=bs if with_bs else None)
        assert got == str(want), key


def test_the_rule_names_families_as_conventions_does(the_rule: dict[str, Any]) -> None:
    """The family is RNN/LSTM/GRU and the cell is a flag, in the rule as in Conventions."""
    assert the_rule["families"] == list(FAMILIES) == ["RNN", "LSTM", "GRU"]
    for key in [*the_rule["dims"], *the_rule["texts"]]:
        family, cell = key.split("|")[:2]
        assert family in FAMILIES and cell in ("0", "1"), key
    dims = the_rule["dims"]["GRU|1|0|0|batched"]
    assert dims == {n: list(d) for n, d in conventions(nn.GRUCell(3, 4)).dims().items()}


def test_site_configs_name_families_as_conventions_does() -> None:
    cfg = Config("LSTM", layers=3, bidirectional=True, proj=10, cell=True)
    assert (cfg.family, cfg.cell, cfg.kind) == ("LSTM", True, "LSTMCell")
    assert (cfg.layers, cfg.bidirectional, cfg.proj) == (1, False, 0)  # a cell has none of them
    assert cfg.key == "LSTMCell-L1-uni-sf-p0-T3-bs2"  # the diagram files keep their names (the class name)
    conv = conventions(cfg.module())
    assert (conv.family, conv.cell, conv.kind) == (cfg.family, cfg.cell, cfg.kind)
    with pytest.raises(sv.SpecError, match=r"unknown family 'GRUCell'; valid: RNN, LSTM, GRU \(a cell is cell=True"):
        Config("GRUCell")
    grid = {"layers": (1,), "proj": (0,), "T": (1,), "bs": (1,)}
    assert {c.kind for c in configs(grid)} == {"RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"}


def test_a_number_that_is_not_a_product_of_sizes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert template("view(13, 2, -1, 26) h_0 x0", {"num_layers": 13}) == [
        "view(", [1, "num_layers"], ", 2, -1, ", [2, "num_layers"], ") h_0 x0"]
    real = explorer_rule._explain

    def with_a_sum(layer: Any, given: Any, sizes: Any) -> list[str]:  # a text with input_size + hidden_size in it
        return [t + f"\n  total {sizes['input_size'] + sizes['hidden_size']}" for t in real(layer, given, sizes)]

    monkeypatch.setattr(explorer_rule, "_explain", with_a_sum)
    with pytest.raises(RuntimeError, match="has a number that is not a product of its sizes"):
        rule()
