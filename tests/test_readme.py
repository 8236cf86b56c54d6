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


PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```(?:\n\n```\n(.*?)```)?", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_every_python_block_runs_as_pasted(index, tmp_path, monkeypatch, capsys):
    """Each ```python block of the README runs on its own in a fresh namespace (imports included); one that
    shows a ShapeError (in its comments or the output block after it) raises exactly that code."""
    import torch

    code, shown = PYTHON_BLOCKS[index]
    raised = re.search(r"^(?:# |shapeviz\.ShapeError: )\[(\w+)\]", code + "\n" + shown, flags=re.M)
    if "sv.dry_run(" in code:
        raised = None  # a dry run returns its ShapeError (run.error): the block prints it
    monkeypatch.chdir(tmp_path)
    allow_rnn = torch._dynamo.config.allow_rnn
    try:
        if raised:
            with pytest.raises(sv.ShapeError) as info:
                exec(compile(code, "README.md", "exec"), {"__name__": "readme"})  # the README's own code
            assert info.value.code == raised.group(1)
        else:
            exec(compile(code, "README.md", "exec"), {"__name__": "readme"})  # the README's own code
    finally:
        torch._dynamo.config.allow_rnn = allow_rnn
        torch._dynamo.reset()
        sv.disable()
    capsys.readouterr()


def test_the_trace_table_is_what_the_block_prints(tmp_path, monkeypatch):
    import subprocess
    import sys

    code, shown = next((c, s) for c, s in PYTHON_BLOCKS if "class CharRNN" in c)
    (tmp_path / "model.py").write_text(code, encoding="utf-8")
    out = subprocess.run([sys.executable, "-W", "ignore", "model.py"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout == shown
