"""The command line and its streams and startup: encodings, closed pipes, no torch for usage errors,
and the one-line usage errors of ``--input`` names and subcommand options.

Real processes where the process is the point (a cp1252 stdout, a pipe whose reader is gone, what
``--help`` imports); the rest in-process through ``main(argv)``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shapeviz.apps.cli import EXIT_BROKEN_PIPE, EXIT_OK, EXIT_USAGE, main

MODEL = textwrap.dedent('''\
    import torch.nn as nn

    IMPORTED = open(__file__ + ".imported", "w").close()  # shows the file was imported


    def build():
        return nn.Sequential(nn.Embedding(28, 8), nn.GRU(8, 16, batch_first=True))
    ''')


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "model.py").write_text(MODEL, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "100")
    return tmp_path


def shapeviz(*argv: str, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    """``python -m shapeviz ARGV`` in a real process (bytes out, so the encoding can be checked)."""
    return subprocess.run([sys.executable, "-m", "shapeviz", *argv], timeout=180, check=False,
                          env={**os.environ, "COLUMNS": "100", **(env or {})}, **kwargs)  # type: ignore[call-overload]


# ====================================================================== an encoding that has no '→'
def test_trace_on_a_cp1252_stdout_degrades_and_succeeds(user_dir: Path) -> None:
    proc = shapeviz("trace", "model.py:build", "--input", "bs=2,T=5", env={"PYTHONIOENCODING": "cp1252"},
                    capture_output=True)
    assert (proc.returncode, proc.stderr) == (EXIT_OK, b""), proc.stderr
    out = proc.stdout.decode("cp1252")
    assert "1 (GRU)        input (bs=2, T=5, emb=8) -> output (bs=2, T=5, D*h=16)" in out
    assert "\u2192" not in out and "internal error" not in out


def test_demo_on_a_cp1252_stdout_degrades_and_succeeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="cp1252", errors="strict", write_through=True)
    monkeypatch.setattr(sys, "stdout", stream)
    code = main(["demo", "-o", str(tmp_path / "demo")])
    stream.flush()
    monkeypatch.undo()
    assert code == EXIT_OK
    assert stream.errors == "strict"  # put back as it was
    out = raw.getvalue().decode("cp1252")
    assert "[batch_first_swap]" in out and " -> " in out and "hint:" in out


# ====================================================================== a pipe whose reader is gone
def _into_closed_pipe(*argv: str) -> subprocess.CompletedProcess[bytes]:
    """Run with stdout a real pipe whose read end is already closed: every write gets EPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        return shapeviz(*argv, stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)


@pytest.mark.parametrize("argv", [["explain", "LSTM(10, 20, num_layers=2)", "--T", "5"], ["--help"]])
def test_a_closed_pipe_exits_quietly_with_141(argv: list[str]) -> None:
    proc = _into_closed_pipe(*argv)
    assert proc.returncode == EXIT_BROKEN_PIPE == 128 + 13  # as a shell reports a tool SIGPIPE stopped
    assert proc.stderr == b""  # no "cannot write", no "Exception ignored", no traceback


def test_head_reads_the_first_line(tmp_path: Path) -> None:
    """The shell pipeline of the issue: the first line comes through, the pipeline's status is head's."""
    cmd = f'{sys.executable} -m shapeviz explain "GRU(8, 16)" | head -1'
    proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=180, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "GRU(8, 16)\n", "")


# ====================================================================== no torch for --help
def test_help_and_usage_errors_never_import_torch(user_dir: Path) -> None:
    argvs = [["--help"], ["--version"], [], ["explain"], ["explain", "LSTM(10, 20)", "--t", "5"], ["frobnicate"],
             ["explain", "Linear(3, 4)"], ["draw", "LSTM(10, 20)", "-o", "x.pdf"],
             ["trace", "model.py:build", "--input", "bs=2,T=5,vocb=28"], ["check", "model.py:build", "--input", "bs=0"],
             ["check", "missing.py:build", "--input", "bs=2,T=5"], ["trace", "model.txt:build", "--input", "bs=2"]]
    probe = ("import contextlib, io, json, sys\nfrom shapeviz.apps.cli import main\n"
             f"with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
             f"    codes = [main(a) for a in {argvs!r}]\n"
             "print(json.dumps([codes, 'torch' in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    codes, torch_loaded = json.loads(proc.stdout)
    assert codes == [EXIT_OK, EXIT_OK] + [EXIT_USAGE] * (len(argvs) - 2)
    assert torch_loaded is False
    assert not (user_dir / "model.py.imported").exists()  # a bad --input is refused before FILE.py runs


def test_python_dash_m_help_imports_no_torch() -> None:
    proc = shapeviz("--help", env={"PYTHONPROFILEIMPORTTIME": "1"}, capture_output=True)
    assert proc.returncode == EXIT_OK
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.decode().splitlines()]
    assert "shapeviz.apps.cli" in imported and "torch" not in imported


# ====================================================================== unknown --input names
@pytest.mark.parametrize(("spec", "fragment"), [
    ("bs=2,T=5,vocb=28", "unknown dim name 'vocb' in 'bs=2,T=5,vocb=28' (did you mean vocab?)"),
    ("batch_size=2,T=5", "unknown dim name 'batch_size' in 'batch_size=2,T=5' (did you mean bs?)"),
    ("bs=2,t=5", "unknown dim name 't' in 'bs=2,t=5' (did you mean T?)"),
    ("bs=2,T=5,colour=3", "unknown dim name 'colour' in 'bs=2,T=5,colour=3'; the names are T (sequence length)"),
])
@pytest.mark.parametrize("command", [["trace", "--ops"], ["check"], ["check", "--meta"]])
def test_an_unknown_input_name_is_one_usage_line(capsys: pytest.CaptureFixture[str], user_dir: Path,
                                                 command: list[str], spec: str, fragment: str) -> None:
    code = main([command[0], "model.py:build", "--input", spec, *command[1:]])
    out, err = capsys.readouterr()
    assert (code, out) == (EXIT_USAGE, "")
    assert err.startswith(f"shapeviz: --input: {fragment}") and err.count("\n") == 1, err
    assert "vocab (vocabulary size, for token ids)" in err
    assert not (user_dir / "model.py.imported").exists()


def test_the_known_input_names_still_work(capsys: pytest.CaptureFixture[str], user_dir: Path) -> None:
    assert main(["check", "model.py:build", "--input", "bs=2,T=5,vocab=28"]) == EXIT_OK
    assert "ran on input (bs=2, T=5) int64" in capsys.readouterr().out


# ====================================================================== unknown subcommand options
@pytest.mark.parametrize(("argv", "usage", "hint"), [
    (["explain", "LSTM(10, 20)", "--t", "5"], "usage: shapeviz explain [-h] [--T T]",
     "shapeviz explain: error: unrecognized arguments: --t 5 (did you mean --T?)"),
    (["explain", "LSTM(10, 20)", "--BS=3"], "usage: shapeviz explain",
     "unrecognized arguments: --BS=3 (did you mean --bs?)"),
    (["trace", "model.py:build", "--input", "bs=2,T=5", "--opz"], "usage: shapeviz trace",
     "unrecognized arguments: --opz (did you mean --ops?)"),
    (["draw", "GRU(8, 16)", "-o", "x.svg", "extra"], "usage: shapeviz draw", "unrecognized arguments: extra\n"),
    (["--frob", "explain", "GRU(8, 16)"], "usage: shapeviz [-h]", "shapeviz: error: unrecognized arguments: --frob"),
])
def test_an_unknown_option_gets_its_commands_usage(capsys: pytest.CaptureFixture[str], user_dir: Path,
                                                   argv: list[str], usage: str, hint: str) -> None:
    code = main(argv)
    out, err = capsys.readouterr()
    assert (code, out) == (EXIT_USAGE, "")
    assert err.startswith(usage) and hint in err and "Traceback" not in err, err
    assert not (user_dir / "model.py.imported").exists()
