"""The benchmark runner's plumbing (never its timings): rows that need the bench extra are skipped, not
failed, and the whole-process helper reports the median of per-round ratios."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from bench import procs
from bench import run as runner
from bench.common import SKIPPED, optional

NEEDS_EXTRA = textwrap.dedent('''\
    from bench.common import Row, optional, skipped_row

    def run(quick=False):
        info = optional("torchinfo")
        if info is None:
            return [skipped_row("sv.trace", "torchinfo.summary", "<= 1.0")]
        return [Row("sv.trace", "torchinfo.summary", 1.0, 2.0, "<= 1.0")]
    ''')


@pytest.fixture
def fake_benchmarks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three benchmark modules: one asks for torchinfo politely, one imports torchview at the top,
    one imports it inside run(); none of the bench extra importable."""
    pkg = tmp_path / "fakebench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "polite.py").write_text(NEEDS_EXTRA, encoding="utf-8")
    (pkg / "top.py").write_text("import torchview\n\ndef run():\n    return []\n", encoding="utf-8")
    (pkg / "inside.py").write_text("def run(quick=False):\n    import torchinfo\n    return []\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(runner, "MODULES", ("fakebench.polite", "fakebench.top", "fakebench.inside"))
    for name in ("torchinfo", "torchview"):
        monkeypatch.setitem(sys.modules, name, None)  # "not installed"


def test_runner_without_the_bench_extra(fake_benchmarks: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert optional("torchinfo") is None
    assert runner.main([]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "failed" not in out
    lines = [line for line in out.splitlines() if SKIPPED in line]
    assert lines == [
        f"| sv.trace | torchinfo.summary | | | {SKIPPED} | <= 1.0 | skipped |",
        f"| fakebench.top | needs torchview | | | {SKIPPED} |  | skipped |",
        f"| fakebench.inside | needs torchinfo | | | {SKIPPED} |  | skipped |",
    ]
    assert "1 threads" in out  # every row runs with one torch thread


def test_other_import_errors_still_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken_bench.py").write_text("def run():\n    import no_such_dependency\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(runner, "MODULES", ("broken_bench",))
    assert runner.main([]) == 1
    assert "failed: broken_bench" in capsys.readouterr().out


def test_the_real_benchmarks_ask_for_the_extra_politely() -> None:
    for name in ("bench_trace.py", "bench_unroll.py"):
        source = (Path(procs.__file__).parent / name).read_text(encoding="utf-8")
        assert "import torchinfo" not in source and "from torchview" not in source.split("def _torchview_time")[0]
        assert "optional(" in source


def test_median_of_per_round_ratios() -> None:
    t = procs.Timing(a=(1.0, 4.0, 3.0), b=(2.0, 2.0, 1.0))  # per-round ratios 0.5, 2, 3
    assert t.ratio == 2.0  # not the ratio of medians (3 / 2)
    row = t.row("a", "b", "<= 1")
    assert (row.ratio, row.shapeviz, row.other, row.unit) == (2.0, 3.0, 2.0, "s")


def test_compare_runs_both_commands_interleaved(tmp_path: Path) -> None:
    log = tmp_path / "log"
    a = [sys.executable, "-c", f"open({str(log)!r}, 'a').write('a')"]
    b = [sys.executable, "-c", f"open({str(log)!r}, 'a').write('b')"]
    t = procs.compare(a, b, rounds=3)
    assert t.rounds == 3 and len(t.b) == 3
    assert log.read_text() == "ab" + "ab" + "ba" + "ab"  # warm-up, then alternating which goes first


def test_a_failing_command_is_reported() -> None:
    with pytest.raises(RuntimeError, match="exited 3"):
        procs.wall([sys.executable, "-c", "raise SystemExit(3)"])


def test_write_puts_the_table_into_the_bench_readme(tmp_path: Path) -> None:
    from bench.common import Row

    page = tmp_path / "README.md"
    page.write_text(f"# b\n\nreading\n\n{runner.MARK}\nold stamp\n\n| old | table |\n\nafter\n",
                    encoding="utf-8")
    runner.write_readme([Row("a", "b", 1.0, 2.0, "<= 0.5"), Row("c", "d", 3.0, 2.0, "<= 1.0")], "new stamp", page)
    text = page.read_text(encoding="utf-8")
    assert text.startswith(f"# b\n\nreading\n\n{runner.MARK}\nnew stamp\n\n| shapeviz measures")
    assert "| a | b | 1.00 µs | 2.00 µs | 0.5 | <= 0.5 | met |" in text
    assert "| c | d | 3.00 µs | 2.00 µs | 1.5 | <= 1.0 | missed |" in text
    assert text.endswith("\nafter\n") and "old" not in text
    assert (Path(runner.__file__).parent / "README.md").read_text(encoding="utf-8").count(runner.MARK) == 1
