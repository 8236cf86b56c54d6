"""Whole-process timings, side by side: each command run N times, interleaved, medians of per-round ratios
with their interquartile range.

>>> t = compare([sys.executable, "-c", "pass"], [sys.executable, "-c", "pass"], rounds=2)
>>> t.rounds, t.ratio > 0
(2, True)

Rows: ``import shapeviz`` against ``import torch``, the CLI's ``explain`` against ``import torch``, its
``--help`` against ``import shapeviz`` (issue 24: help and usage errors never import torch),
and a pytest session that never uses shapeviz with the plugin installed against ``-p no:shapeviz``.
Every command runs with one torch thread (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``), after one
untimed warm-up run of each (the file cache), and the rounds alternate which command goes first. A
subprocess's time is wall time (the thread's CPU time would leave the child out), so these rows are the
noisiest on a loaded machine: their spread says how much.

Bytecode is cached as on an installed machine (pip compiles ``.pyc`` files): the children run without
``PYTHONDONTWRITEBYTECODE`` and with ``PYTHONPYCACHEPREFIX`` set to one temporary folder per bench run
(:func:`cached_bytecode`, removed after), so the warm-up run writes the bytecode of every module it
imports and the timed runs read it, instead of compiling shapeviz's source anew in each run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.common import Rounds, Row

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


Timing = Rounds
"""Wall seconds per round of two commands run side by side (:class:`bench.common.Rounds`)."""


@contextlib.contextmanager
def cached_bytecode() -> Iterator[str]:
    """A temporary folder for the children's bytecode (``PYTHONPYCACHEPREFIX``), removed at the end.

    >>> with cached_bytecode() as pycache:
    ...     wall([sys.executable, "-c", "import sys; assert sys.pycache_prefix and not sys.dont_write_bytecode"],
    ...          pycache=pycache) > 0
    True
    """
    with tempfile.TemporaryDirectory(prefix="shapeviz-bench-pyc-") as folder:
        yield folder


def wall(cmd: Sequence[str], cwd: str | None = None, pycache: str | None = None) -> float:
    """Seconds ``cmd`` takes to run to its end (it must succeed), with one torch thread; with ``pycache``
    (a :func:`cached_bytecode` folder), its bytecode written there and read back."""
    env = {**os.environ, **ONE_THREAD}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
    return seconds


def compare(a: Sequence[str], b: Sequence[str], rounds: int = 7, cwd: str | None = None,
            pycache: str | None = None) -> Timing:
    """Run ``a`` and ``b`` ``rounds`` times each, interleaved (a, b, then b, a, ...), after a warm-up
    (which writes the bytecode into ``pycache``, if given: see :func:`wall`)."""
    wall(a, cwd, pycache)
    wall(b, cwd, pycache)
    ta: list[float] = []
    tb: list[float] = []
    for i in range(rounds):
        if i % 2:
            tb.append(wall(b, cwd, pycache))
            ta.append(wall(a, cwd, pycache))
        else:
            ta.append(wall(a, cwd, pycache))
            tb.append(wall(b, cwd, pycache))
    return Timing(tuple(ta), tuple(tb))


def _cli() -> list[str]:
    script = shutil.which("shapeviz") or shutil.which("shapeviz", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "shapeviz"]


def run(quick: bool = False) -> list[Row]:
    """The whole-process rows (seconds; the ratio is the median of per-round ratios, with their spread)."""
    with cached_bytecode() as pycache:
        return _rows(3 if quick else 7, pycache)


def _rows(rounds: int, pycache: str) -> list[Row]:
    py = sys.executable
    torch_only = [py, "-c", "import torch"]
    rows = [
        compare([py, "-c", "import torch, shapeviz"], torch_only, rounds, pycache=pycache).row(
            "python -c 'import torch, shapeviz'", "python -c 'import torch'", "<= 1.10", "s"),
        compare([py, "-c", "import shapeviz as sv; [getattr(sv, n) for n in sv.__all__]"], torch_only, rounds,
                pycache=pycache).row(
            "import shapeviz and load every public name (sv.__all__)", "python -c 'import torch'", "info", "s"),
    ]
    cli = _cli()
    name = Path(cli[0]).name if len(cli) == 1 else "python -m shapeviz"
    rows.append(compare([*cli, "explain", "LSTM(10,20,num_layers=2)"], torch_only, rounds, pycache=pycache).row(
        f"{name} explain 'LSTM(10,20,num_layers=2)'", "python -c 'import torch'", "<= 1.25", "s"))
    rows.append(compare([*cli, "--help"], [py, "-c", "import shapeviz"], max(rounds, 9), pycache=pycache).row(
        f"{name} --help (argparse, the commands' one-line help; no torch)", "python -c 'import shapeviz'",
        "<= 1.5", "s"))
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "test_plain.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n", encoding="utf-8")
        session = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_plain.py"]
        rows.append(compare(session, [*session, "-p", "no:shapeviz"], rounds, cwd=folder, pycache=pycache).row(
            "pytest session never using shapeviz, plugin installed", "the same with -p no:shapeviz", "<= 1.05", "s"))
    return rows


if __name__ == "__main__":
    from bench.run import print_rows

    print_rows(run())
