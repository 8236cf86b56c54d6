"""Every error path of the command line: the documented exit code, one reason, never a traceback.

Most run in-process through ``main(argv)``; the exit-code contract of the real process (``sys.exit``
in the user's file, SIGTERM while the renderer runs) is checked in subprocesses.
"""

from __future__ import annotations

import builtins
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import shapeviz.render.backend as shapeviz_backend
from shapeviz.apps import cli
from shapeviz.apps.cli import (
    EXIT_BACKEND,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_USER_CODE,
    MAX_STEPS,
    main,
)
from shapeviz.render.caps import MAX_CELLS

USER_FILE = textwrap.dedent('''\
    import sys

    import torch.nn as nn


    def build():
        return nn.GRU(8, 16)


    def a_function():
        def forward(x):
            return x
        return forward


    def exits():
        sys.exit("no config")


    class ExitsInForward(nn.Module):
        def forward(self, x):
            sys.exit(2)


    def exits_in_forward():
        return ExitsInForward()
    ''')


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "model.py").write_text(USER_FILE, encoding="utf-8")
    script = "import sys\nimport torch.nn as nn\n\ndef build():\n    return nn.GRU(8, 16)\n\nsys.exit(0)\n"
    (tmp_path / "script.py").write_text(script, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """(exit code, stderr) of ``main(argv)``; asserts one reason on stderr and no traceback."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if code != EXIT_OK:
        assert err.startswith(("shapeviz: ", "usage: ")), err
    return code, err


def fake_renderer(folder: Path, body: str) -> Path:
    """An executable shell script standing in for dot."""
    path = folder / "fake-dot"
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# ====================================================================== -o paths that cannot be written
@pytest.mark.parametrize("command", [["draw", "GRU(8, 16)"], ["trace", "model.py:build", "--input", "T=5,bs=2"]])
def test_output_is_a_folder(capsys: pytest.CaptureFixture[str], user_dir: Path, command: list[str]) -> None:
    (user_dir / "out.svg").mkdir()
    code, err = run(capsys, *command, "-o", "out.svg")
    assert code == EXIT_USAGE
    assert "'out.svg' is a folder; give a file name" in err


def test_output_name_too_long(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = run(capsys, "draw", "GRU(8, 16)", "-o", str(tmp_path / ("a" * 300 + ".svg")))
    assert code == EXIT_USAGE
    assert "File name too long" in err and len(err.splitlines()) == 1


def test_output_permission_denied(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "locked" / "x.svg"
    real_open = builtins.open

    def deny(file: Any, *args: Any, **kwargs: Any) -> Any:  # chmod does not stop root, so deny here
        if str(file) == str(target):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    code, err = run(capsys, "draw", "GRU(8, 16)", "-o", str(target))
    assert code == EXIT_USAGE
    assert "cannot write" in err and "Permission denied" in err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a file-size limit (ulimit -f) is POSIX")
def test_a_write_that_fails_after_the_check(tmp_path: Path) -> None:
    """A full disk, as ``ulimit -f`` makes one: the check passes (an empty file fits), the write fails."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))  # Python ignores SIGXFSZ: writes raise EFBIG

    if shapeviz_backend.find_backend() is None:
        pytest.skip("no dot program: the SVG is never written")
    proc = subprocess.run([sys.executable, "-m", "shapeviz", "draw", "GRU(8, 16)", "-o", str(tmp_path / "x.svg")],
                          capture_output=True, text=True, timeout=180, check=False, preexec_fn=limit)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert proc.stderr.startswith("shapeviz: cannot write: [Errno 27] File too large") and proc.stdout == ""


# ====================================================================== the renderer
@pytest.mark.parametrize(("body", "fragment"), [
    ("exit 1", "failed (exit 1)"),
    ("echo 'Error: syntax' >&2; exit 3", "failed (exit 3): Error: syntax"),
    ("exit 0", "failed (exit 0)"),  # no output at all
])
def test_broken_shapeviz_dot(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             body: str, fragment: str) -> None:
    monkeypatch.setenv("SHAPEVIZ_DOT", str(fake_renderer(tmp_path, body)))
    code, err = run(capsys, "draw", "GRU(8, 16)", "-o", str(tmp_path / "x.svg"))
    assert code == EXIT_BACKEND
    assert fragment in err
    assert not (tmp_path / "x.svg").exists()


def test_shapeviz_dot_that_is_no_program(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHAPEVIZ_DOT", str(tmp_path / "nowhere" / "dot"))
    code, err = run(capsys, "draw", "GRU(8, 16)", "-o", str(tmp_path / "x.svg"))
    assert code == EXIT_BACKEND
    assert "is not an executable program" in err


def test_renderer_time_limit(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    from shapeviz.render import backend

    monkeypatch.setenv("SHAPEVIZ_DOT", str(fake_renderer(tmp_path, "sleep 30")))
    real = backend.run_dot
    monkeypatch.setattr(backend, "run_dot", lambda source, fmt, b=None, timeout=120.0: real(source, fmt, b, 0.2))
    code, err = run(capsys, "draw", "GRU(8, 16)", "-o", str(tmp_path / "x.svg"))
    assert code == EXIT_BACKEND
    assert "took longer than 0.2 s and was stopped" in err


# ====================================================================== sizes
def test_max_steps_is_capped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = run(capsys, "draw", "GRU(8, 16)", "-o", str(tmp_path / "x.svg"), "--max-steps", str(10**6))
    assert code == EXIT_USAGE
    assert f"--max-steps must be at most {MAX_STEPS}, got 1000000" in err


def test_the_largest_max_steps_is_drawn(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _ = run(capsys, "draw", "RNN(2, 3)", "--T", "1000", "-o", str(tmp_path / "x.svg"),
                  "--max-steps", str(MAX_STEPS))
    assert code == EXIT_OK


def test_a_diagram_too_big_is_refused_before_the_work(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from shapeviz.render import unrolled

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("unroll ran")

    monkeypatch.setattr(unrolled, "unroll", never)
    code, err = run(capsys, "draw", "LSTM(8, 16, num_layers=100, bidirectional=True)", "--T", "60",
                    "--max-steps", "60", "-o", str(tmp_path / "x.svg"))
    assert code == EXIT_USAGE
    assert f"60 step columns x 100 layers x 2 directions = 12,000 cells, more than the {MAX_CELLS:,}" in err
    assert "draw at most --max-steps 6" in err


def test_input_larger_than_memory_is_refused(capsys: pytest.CaptureFixture[str], user_dir: Path) -> None:
    code, err = run(capsys, "check", "model.py:build", "--input", "T=100000,bs=100000")
    assert code == EXIT_USAGE
    assert "--input: the input (T=100000, bs=100000, emb=8) needs" in err


@pytest.mark.parametrize("exc", [MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: "
                                                             "can't allocate memory: you tried to allocate 4 bytes")])
def test_an_allocation_that_fails(capsys: pytest.CaptureFixture[str], user_dir: Path,
                                  monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def fail(*args: Any, **kwargs: Any) -> torch.Tensor:
        raise exc

    monkeypatch.setattr(torch, "randn", fail)
    code, err = run(capsys, "check", "model.py:build", "--input", "T=5,bs=2")
    assert code == EXIT_USAGE
    assert "--input: cannot allocate the input (T=5, bs=2, emb=8)" in err


# ====================================================================== the user's code
def test_a_factory_returning_a_plain_function(capsys: pytest.CaptureFixture[str], user_dir: Path) -> None:
    code, err = run(capsys, "trace", "model.py:a_function", "--input", "T=5,bs=2")
    assert code == EXIT_USAGE
    assert "a_function() returned function, not a model; FACTORY must return an nn.Module" in err


@pytest.mark.parametrize(("target", "fragment"), [
    ("script.py:build", "importing script.py called sys.exit(0)"),
    ("model.py:exits", "calling exits() called sys.exit('no config')"),
    ("model.py:exits_in_forward", "the forward pass of exits_in_forward() called sys.exit(2)"),
])
@pytest.mark.parametrize("command", ["check", "trace"])
def test_sys_exit_in_the_users_code(capsys: pytest.CaptureFixture[str], user_dir: Path, command: str,
                                    target: str, fragment: str) -> None:
    code, err = run(capsys, command, target, "--input", "T=5,bs=2")
    assert code == EXIT_USER_CODE
    assert fragment in err and "checked nothing" in err


def test_sys_exit_in_the_users_file_exits_3_in_a_real_process(user_dir: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "shapeviz", "check", "script.py:build", "--input", "T=5,bs=2"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == EXIT_USER_CODE
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("shapeviz: importing script.py called sys.exit(0)")


# ====================================================================== interrupts and bugs
def test_ctrl_c(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli._COMMANDS, "explain", interrupted)
    code, err = run(capsys, "explain", "GRU(8, 16)")
    assert code == 130
    assert err == "shapeviz: interrupted\n"


def test_a_bug_in_shapeviz_exits_5(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(args: Any) -> int:
        return {}["missing"]

    monkeypatch.setitem(cli._COMMANDS, "explain", bug)
    code, err = run(capsys, "explain", "GRU(8, 16)")
    assert code == EXIT_INTERNAL
    assert err.startswith("shapeviz: internal error: KeyError: 'missing' (at test_cli_errors.py:")


def test_the_sigterm_handler_is_restored(capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGTERM)
    assert run(capsys, "explain", "GRU(8, 16)")[0] == EXIT_OK
    assert signal.getsignal(signal.SIGTERM) == before


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (never existed, reaped, or a zombie awaiting its reaper)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
def test_sigterm_stops_the_renderer_too(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # the renderer and a child of its own: both must go (the whole process group is killed)
    dot = fake_renderer(tmp_path, f'sleep 300 &\necho "$$ $!" > {pids}.tmp\nmv {pids}.tmp {pids}\nwait')
    env = {**os.environ, "SHAPEVIZ_DOT": str(dot)}
    cmd = [sys.executable, "-m", "shapeviz", "draw", "GRU(8, 16)", "-o", str(tmp_path / "x.svg")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not pids.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the fake renderer never started"
            time.sleep(0.05)
        renderer = [int(p) for p in pids.read_text().split()]
        assert len(renderer) == 2 and not any(_gone(p) for p in renderer)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM
    assert err == "shapeviz: terminated (SIGTERM)\n" and out == ""
    deadline = time.monotonic() + 10  # SIGKILL is asynchronous: the grandchild may take a moment to die
    while not all(_gone(p) for p in renderer) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in renderer if not _gone(p)] == []


def test_site_refuses_a_folder_of_other_files_unless_forced(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "index.html").write_text("mine", encoding="utf-8")
    code, err = run(capsys, "site", str(tmp_path), "--quiet")
    assert code == EXIT_USAGE and "force" in err
    assert (tmp_path / "index.html").read_text(encoding="utf-8") == "mine"
    seen: dict[str, object] = {}

    def fake_build_site(outdir: object, **kwargs: object) -> list[Path]:
        seen.update(kwargs, outdir=outdir)
        return []

    from shapeviz.gallery import site

    monkeypatch.setattr(site, "build_site", fake_build_site)
    assert main(["site", str(tmp_path), "--quiet", "--force"]) == EXIT_OK
    assert seen["force"] is True and seen["outdir"] == str(tmp_path)
