"""The command line, run in-process through ``main(argv)``; outputs compared with golden files.

Regenerate the golden files with ``pytest tests/test_cli.py --regen``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from shapeviz.apps.cli import EXIT_BACKEND, EXIT_OK, EXIT_SHAPE, EXIT_USAGE, EXIT_USER_CODE, main

Golden = Callable[[str, str], None]  # the golden fixture of conftest.py

USER_FILE = textwrap.dedent('''\
    """A user's model file for the CLI tests."""
    from __future__ import annotations

    from dataclasses import dataclass

    import torch.nn as nn

    from shapeviz.gallery.models import EmbedRNN, ForgotTranspose


    def build():
        return EmbedRNN(vocab=28, emb=20, hidden=32)


    def forgot_transpose():
        return ForgotTranspose(vocab=28, emb=20, hidden=32)


    @dataclass
    class Config:
        emb: int = 8
        hidden: int = 16


    def gru():
        cfg = Config()
        return nn.GRU(cfg.emb, cfg.hidden, batch_first=True)


    class Scratch(nn.Module):
        def forward(self, x):
            return x @ x.mT


    def plain():
        return Scratch()


    def boom():
        raise ValueError("no weights file at ./ckpt.pt")


    def not_a_model():
        return 42


    def crashes():
        return nn.Sequential(nn.Linear(3, 4))
    ''')


@pytest.fixture(autouse=True)
def _fixed_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps help text to the terminal width


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "model.py").write_text(USER_FILE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ====================================================================== help
@pytest.mark.parametrize("command", ["", "explain", "draw", "trace", "check", "gallery", "demo"])
def test_help_of_every_command(golden: Golden, capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = run(capsys, *([command] if command else []), "--help")
    assert code == EXIT_OK
    golden(f"cli/help_{command or 'main'}.txt", out)


def test_main_help_documents_exit_codes_and_imports(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--help")
    for line in ("0  ok", "1  a shape error", "2  usage error", "3  your code raised", "4  no Graphviz"):
        assert line in out
    assert "IMPORT your FILE.py" in out
    _, out, _ = run(capsys, "check", "--help")
    assert "IMPORTS FILE.py" in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == EXIT_USAGE
    assert "explain" in out and "demo" in out


def test_python_dash_m_help_in_a_subprocess() -> None:
    res = subprocess.run([sys.executable, "-m", "shapeviz", "--help"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "COLUMNS": "100"})
    assert res.returncode == 0
    assert res.stdout.startswith("usage: shapeviz")
    assert "exit codes:" in res.stdout


# ====================================================================== explain / draw
@pytest.mark.parametrize(("name", "argv"), [
    ("explain_lstm_bi", ["explain", "LSTM(10, 20, num_layers=2, bidirectional=True)", "--T", "5", "--bs", "3"]),
    ("explain_grucell", ["explain", "GRUCell(8, 16)"]),
    ("explain_lstm_proj_torch", ["explain", "nn.LSTM(10, 20, proj_size=5, batch_first=True)", "--T", "7",
                                 "--style", "torch"]),
])
def test_explain(golden: Golden, capsys: pytest.CaptureFixture[str], name: str, argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, err) == (EXIT_OK, "")
    golden(f"cli/{name}.txt", out)


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_draw_writes_the_diagram(capsys: pytest.CaptureFixture[str], tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"gru{suffix}"
    code, out, _ = run(capsys, "draw", "GRU(8, 16, batch_first=True)", "-o", str(path), "--T", "4", "--bs", "2")
    assert code == EXIT_OK
    assert out == f"wrote {path}\n"
    data = path.read_bytes()
    if suffix == ".svg":
        assert b"<svg" in data and b"(bs=2, T=4, emb=8)" in data
    else:
        assert data.startswith(b"\x89PNG")


def test_draw_max_steps_elides_the_middle(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "long.svg"
    code, _, _ = run(capsys, "draw", "RNN(4, 8)", "-o", str(path), "--T", "100", "--max-steps", "4")
    assert code == EXIT_OK
    svg = path.read_text(encoding="utf-8")
    assert "input[99]" in svg and "input[50]" not in svg


def test_draw_without_a_dot_program_exits_4(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import shapeviz.render.backend as backend

    monkeypatch.setattr(backend, "find_backend", lambda: None)
    code, _, err = run(capsys, "draw", "RNN(4, 8)", "-o", str(tmp_path / "x.svg"))
    assert code == EXIT_BACKEND
    assert err.startswith("shapeviz: ") and "Traceback" not in err


# ====================================================================== bad SPECs and options
@pytest.mark.parametrize(("argv", "fragment"), [
    (["explain", "Linear(3, 4)"], "unknown class 'Linear'"),
    (["explain", "LSTM(x, 20)"], "must be a literal"),
    (["explain", "__import__('os').system('echo pwned')"], "must be a call of a class name"),
    (["draw", "LSTM(10, 20, hidden=3)", "-o", "x.svg"], "LSTM has no argument 'hidden'"),
    (["explain", "GRU(-8, 16)"], "input_size must be a positive int, got -8"),
    (["explain", "LSTM(10, 20)", "--T", "-1"], "argument --T: expected a positive integer, got -1"),
    (["explain", "LSTM(10, 20)", "--style", "keras"], "invalid choice: 'keras'"),
    (["draw", "LSTM(10, 20)", "-o", "lstm.pdf"], "must end in one of .svg, .png"),
    (["draw", "LSTM(10, 20)", "-o", "x.svg", "--max-steps", "1"], "--max-steps must be at least 2"),
    (["draw", "LSTM(10, 20)"], "the following arguments are required: -o/--output"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_usage_errors_exit_2_with_one_message_and_no_traceback(
        capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == EXIT_USAGE
    assert fragment in err
    assert "Traceback" not in err and out == ""


def test_bad_spec_message_is_golden(golden: Golden, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run(capsys, "explain", "__import__('os').system('x')")
    golden("cli/bad_spec_injection.txt", err)


def test_the_injection_never_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    code, _, _ = run(capsys, "explain", f"LSTM(open({str(marker)!r}, 'w'), 2)")
    assert code == EXIT_USAGE
    assert not marker.exists()


# ====================================================================== trace / check
def test_trace_prints_the_table(golden: Golden, capsys: pytest.CaptureFixture[str], user_dir: Path) -> None:
    code, out, err = run(capsys, "trace", "model.py:build", "--input", "bs=2,T=5,vocab=28")
    assert (code, err) == (EXIT_OK, "")
    golden("cli/trace_build.txt", out)


def test_trace_decides_the_input_from_the_first_layer(golden: Golden, capsys: pytest.CaptureFixture[str],
                                                      user_dir: Path) -> None:
    code, out, _ = run(capsys, "trace", "model.py:build", "--input", "bs=2,T=5")  # Embedding -> tokens
    assert code == EXIT_OK and "tokens (bs=2, T=5) int64" in out
    code, out, _ = run(capsys, "trace", "model.py:gru", "--input", "bs=2,T=5")  # GRU -> floats, emb appended
    assert code == EXIT_OK
    golden("cli/trace_gru.txt", out)


def test_trace_ops_records_the_users_operations(capsys: pytest.CaptureFixture[str], user_dir: Path) -> None:
    code, out, _ = run(capsys, "trace", "model.py:plain", "--input", "bs=2,T=5", "--ops")
    assert code == EXIT_OK
    assert "model.py:" in out and "mT" in out


@pytest.mark.parametrize("name", ["trace.json", "table.txt", "plot.png"])
def test_trace_output_files(capsys: pytest.CaptureFixture[str], user_dir: Path, name: str) -> None:
    code, out, _ = run(capsys, "trace", "model.py:build", "--input", "bs=2,T=5", "-o", f"out/{name}")
    assert code == EXIT_OK and out == f"wrote out/{name}\n"
    data = (user_dir / "out" / name).read_bytes()
    if name.endswith(".json"):
        doc = json.loads(data)
        assert doc["schema"] == "shapeviz.trace/2"
        assert [c["type"] for c in doc["calls"]] == ["EmbedRNN", "Embedding", "RNN", "Linear"]
    elif name.endswith(".txt"):
        assert b"rnn (RNN)" in data and b"(T=5, bs=2, emb=20)" in data
    else:
        assert data.startswith(b"\x89PNG")


def test_check_ok(golden: Golden, capsys: pytest.CaptureFixture[str], user_dir: Path) -> None:
    code, out, err = run(capsys, "check", "model.py:build", "--input", "bs=2,T=5")
    assert (code, err) == (EXIT_OK, "")
    golden("cli/check_ok.txt", out)


def test_check_finds_the_shape_error_exit_1(golden: Golden, capsys: pytest.CaptureFixture[str],
                                            user_dir: Path) -> None:
    code, out, err = run(capsys, "check", "model.py:forgot_transpose", "--input", "bs=2,T=5")
    assert code == EXIT_SHAPE and out == ""
    assert "[batch_first_swap]" in err and "hint: x = x.transpose(0, 1)" in err
    golden("cli/check_shape_error.txt", err)


def test_check_meta_dry_runs(capsys: pytest.CaptureFixture[str], user_dir: Path) -> None:
    code, out, err = run(capsys, "check", "model.py:build", "--input", "bs=2,T=5", "--meta")
    assert (code, err) == (EXIT_OK, "")
    assert out.startswith("ok: build() dry-ran on meta input") and "no shape error" in out
    code, out, err = run(capsys, "check", "model.py:forgot_transpose", "--input", "bs=2,T=5", "--meta")
    assert code == EXIT_SHAPE and out == ""
    assert "[batch_first_swap]" in err and "hint: x = x.transpose(0, 1)" in err


def test_trace_also_checks(capsys: pytest.CaptureFixture[str], user_dir: Path) -> None:
    code, _, err = run(capsys, "trace", "model.py:forgot_transpose", "--input", "bs=2,T=5")
    assert code == EXIT_SHAPE and "[batch_first_swap]" in err


@pytest.mark.parametrize(("argv", "code", "fragment"), [
    (["check", "missing.py:build", "--input", "bs=2,T=5"], EXIT_USAGE, "no such file: 'missing.py'"),
    (["check", "model.py", "--input", "bs=2,T=5"], EXIT_USAGE, "expected FILE.py:FACTORY"),
    (["check", "model.txt:build", "--input", "bs=2,T=5"], EXIT_USAGE, "is not a .py file"),
    (["check", "model.py:nope", "--input", "bs=2,T=5"], EXIT_USAGE,
     "model.py has no 'nope'; FACTORY must be a function or class defined in the file that returns the model. "
     "Callables defined there: Config, Scratch, boom, build, crashes, forgot_transpose, gru, not_a_model, plain"),
    (["check", "model.py:not_a_model", "--input", "bs=2,T=5"], EXIT_USAGE, "not_a_model() returned int"),
    (["check", "model.py:build", "--input", "bs=2;T=5"], EXIT_USAGE, "is not NAME=SIZE"),
    (["check", "model.py:build", "--input", "vocab=28"], EXIT_USAGE, "names no dims besides vocab"),
    (["check", "model.py:build", "--input", "bs=0,T=5"], EXIT_USAGE, "sizes must be at least 1, got bs=0"),
    (["trace", "model.py:build", "--input", "bs=2,T=5", "-o", "t.csv"], EXIT_USAGE,
     "must end in one of .json, .txt, .png, .svg"),
    (["check", "model.py:build"], EXIT_USAGE, "the following arguments are required: --input"),
    (["check", "model.py:boom", "--input", "bs=2,T=5"], EXIT_USER_CODE,
     "calling boom() raised ValueError: no weights file at ./ckpt.pt"),
    (["check", "model.py:crashes", "--input", "bs=2,T=5"], EXIT_USER_CODE,
     "the forward pass of crashes() raised RuntimeError"),
    (["trace", "model.py:crashes", "--input", "bs=2,T=5"], EXIT_USER_CODE, "shapeviz.trace: the forward pass"),
])
def test_file_and_factory_errors(capsys: pytest.CaptureFixture[str], user_dir: Path, argv: list[str],
                                 code: int, fragment: str) -> None:
    got, out, err = run(capsys, *argv)
    assert got == code
    assert fragment in err
    assert "Traceback" not in err and out == ""


def test_a_factory_that_raises_shows_where(capsys: pytest.CaptureFixture[str], user_dir: Path) -> None:
    _, _, err = run(capsys, "check", "model.py:boom", "--input", "bs=2,T=5")
    assert 'model.py", line' in err and 'raise ValueError("no weights file' in err


def test_a_file_that_fails_to_import_exits_3(capsys: pytest.CaptureFixture[str], user_dir: Path) -> None:
    (user_dir / "broken.py").write_text("import torch\nraise ImportError('needs torchtext')\n", encoding="utf-8")
    code, _, err = run(capsys, "check", "broken.py:build", "--input", "bs=2,T=5")
    assert code == EXIT_USER_CODE
    assert "importing broken.py raised ImportError: needs torchtext" in err


def test_the_users_folder_is_importable_and_sys_path_restored(capsys: pytest.CaptureFixture[str],
                                                             user_dir: Path) -> None:
    (user_dir / "helper.py").write_text("import torch.nn as nn\nSIZE = 8\n", encoding="utf-8")
    (user_dir / "uses.py").write_text("import torch.nn as nn\nfrom helper import SIZE\n\n"
                                      "def build():\n    return nn.GRU(SIZE, 4)\n", encoding="utf-8")
    before = list(sys.path)
    code, out, _ = run(capsys, "check", "uses.py:build", "--input", "T=5,bs=2")
    assert code == EXIT_OK and "(T=5, bs=2, emb=8)" in out
    assert sys.path == before


# ====================================================================== gallery / demo
def test_gallery_command_reports_progress(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import shapeviz.gallery.builder as gallery

    def fake_build(outdir: str, *, progress: Callable[[str], None] | None = None) -> list[Path]:
        """Stands in for the real build, which tests/test_gallery.py covers."""
        for i, name in enumerate(["gru", "lstm"], 1):
            if progress:
                progress(f"[{i}/2] {name}")
        return [Path(outdir) / "README.md"]

    monkeypatch.setattr(gallery, "build", fake_build)
    code, out, _ = run(capsys, "gallery", str(tmp_path))
    assert code == EXIT_OK
    assert out == f"wrote 1 files to {tmp_path}:\n  {tmp_path / 'README.md'}\n"  # the progress bar: a TTY's stderr
    code, out2, _ = run(capsys, "gallery", str(tmp_path), "--quiet")
    assert out2 == out  # --quiet drops only the bar


def test_demo(golden: Golden, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_dir = tmp_path / "demo"
    code, out, err = run(capsys, "demo", "-o", str(out_dir))
    assert (code, err) == (EXIT_OK, "")
    assert "[batch_first_swap]" in out and "hint:" in out
    written = sorted(p.name for p in out_dir.iterdir())
    assert written == [f"{stem}.{fmt}" for stem in ("embed_rnn", "lstm_2layer_bidirectional", "rnncell_loop")
                       for fmt in ("png", "svg")]  # the demo writes PNG and SVG
    for p in out_dir.iterdir():
        head = p.read_bytes()[:64].lstrip()
        assert str(p) in out and (head.startswith((b"<?xml", b"<svg")) if p.suffix == ".svg"
                                  else head.startswith(b"\x89PNG"))
    golden("cli/demo.txt", out.replace(str(tmp_path), "<TMP>"))
