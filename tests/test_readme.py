"""The README's examples tell the truth: their code runs and prints what the README shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch.nn as nn

import shapeviz as sv

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def _blocks(section: str) -> list[str]:
    body = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```[a-z]*\n(.*?)```", body, flags=re.S)


def test_the_caught_mistake_is_real():
    code, shown = _blocks("A caught mistake")[:2]
    with pytest.raises(sv.ShapeError) as info:
        exec(compile(code, "README.md", "exec"), {})  # the README's own example, not user input
    assert f"shapeviz.ShapeError: {info.value}\n" == shown


def test_the_explain_table_is_real():
    block = _blocks("The conventions")[0]
    call, shown = block.split("\n", 1)
    assert call == ">>> print(sv.explain(nn.LSTM(10, 20, num_layers=2, bidirectional=True), T=5, bs=3))"
    assert sv.explain(nn.LSTM(10, 20, num_layers=2, bidirectional=True), T=5, bs=3) + "\n" == shown


def test_the_cli_examples_run_on_the_model_files(monkeypatch, capsys):
    """The README's `shapeviz trace/check gallery/models/...` lines, verbatim, exit 0."""
    import shlex

    from shapeviz.apps.cli import main

    block = _blocks("Command line")[0]
    lines = [line.split(" #", 1)[0].strip() for line in block.splitlines() if "gallery/models/" in line]
    assert len(lines) == 3
    monkeypatch.chdir(Path(__file__).parents[1])
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "shapeviz"
        assert main(argv[1:]) == 0, line
        out = capsys.readouterr().out
        assert "no shape error" in out or "(T*bs=10, vocab=28)" in out, line
