"""The command line's parser, built for one command line: only the commands it names get their options.

``shapeviz --help`` and a bad command name show every command's one-line help and nothing more, so
``build_parser(argv)`` leaves the other commands' parsers empty; these tests check that it parses and
prints exactly what the parser of every command does (``build_parser()``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from shapeviz.apps.cli import EXIT_OK, EXIT_USAGE, _columns, build_parser, main

COMMANDS = ["explain", "draw", "trace", "check", "gallery", "site", "demo"]


@pytest.fixture(autouse=True)
def _fixed_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")


@pytest.mark.parametrize("argv", [["--help"], [], ["frobnicate"], ["--version"], ["-h", "--frob"]])
def test_help_and_a_bad_command_build_no_commands_options(argv: list[str]) -> None:
    parser = build_parser(argv)
    assert list(parser.commands) == COMMANDS
    for name, command in parser.commands.items():
        assert command.format_usage() == f"usage: shapeviz {name}\n"  # empty: not even -h
    assert parser.format_help() == build_parser().format_help()
    assert parser.format_usage() == build_parser().format_usage()


@pytest.mark.parametrize("argv", [
    ["explain", "LSTM(10, 20)", "--T", "5", "--bs", "3", "--style", "torch"],
    ["draw", "GRU(8, 16)", "-o", "gru.svg", "--max-steps", "4"],
    ["trace", "model.py:build", "--input", "bs=2,T=5", "--ops", "-o", "t.json"],
    ["check", "model.py:build", "--input", "bs=2,T=5", "--meta"],
    ["gallery", "out", "--quiet"],
    ["site", "out", "--force"],
    ["demo", "-o", "d"],
    ["demo", "--frob", "x"],                            # left over: refused by _unrecognized
    ["trace", "model.py:build", "--input", "draw"],     # another command's name as a value
])
def test_a_named_command_parses_as_with_every_parser(argv: list[str]) -> None:
    assert build_parser(argv).parse_known_args(argv) == build_parser().parse_known_args(argv)


@pytest.mark.parametrize("name", COMMANDS)
def test_a_named_commands_help_and_usage_are_its_full_ones(name: str) -> None:
    built, every = build_parser([name, "--help"]).commands[name], build_parser().commands[name]
    assert built.format_help() == every.format_help()
    assert built.format_usage() == every.format_usage()
    assert built.format_usage() != f"usage: shapeviz {name}\n"


def test_a_bad_command_name_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate", "--T", "5"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: shapeviz [-h] [--version] COMMAND ...\n")
    assert f"invalid choice: 'frobnicate' (choose from {', '.join(map(repr, COMMANDS))})" in err


@pytest.mark.parametrize(("argv", "code"), [(["--help"], EXIT_OK), (["explain", "--help"], EXIT_OK),
                                           (["--version"], EXIT_OK), ([], EXIT_USAGE), (["explain"], EXIT_USAGE),
                                           (["draw", "GRU(8, 16)"], EXIT_USAGE)])
def test_exit_codes_of_help_and_usage(capsys: pytest.CaptureFixture[str], argv: list[str], code: int) -> None:
    assert main(argv) == code


@pytest.mark.parametrize("columns", [None, "100", "37", "0", "-5", "wide", ""])
def test_the_help_width_is_shutils(monkeypatch: pytest.MonkeyPatch, columns: str | None) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert _columns() == shutil.get_terminal_size().columns


def test_help_imports_neither_shutil_nor_a_commands_modules() -> None:
    probe = ("import contextlib, io, json, sys\nbefore = set(sys.modules)\nfrom shapeviz.apps.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n    code = main(['--help'])\n"
             "print(json.dumps([code, sorted(set(sys.modules) - before)]))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    code, loaded = json.loads(proc.stdout)
    assert code == EXIT_OK and "shapeviz.apps.cli" in loaded
    assert not set(loaded) & {"shutil", "torch", "shapeviz.apps.spec"}, loaded  # shutil: argparse's width
