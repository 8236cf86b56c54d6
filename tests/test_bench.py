"""The benchmark runner's plumbing (never its timings): rows that need the bench extra are skipped, not
failed; the interleaved helper alternates the order, times by the clock it is given (the thread's CPU
time by default) with gc off; rows carry the median of per-round ratios and their interquartile range,
and a target is met or missed only when the whole range is within or beyond it, else unclear."""

from __future__ import annotations

import gc
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench import procs
from bench import run as runner
from bench.common import SKIPPED, Rounds, Row, budget, interleaved, optional, rounds_of

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
        assert "import torchinfo" not in source and "from torchview" not in source.split("def _torchview(")[0]
        assert "optional(" in source


def test_median_of_per_round_ratios() -> None:
    t = procs.Timing(a=(1.0, 4.0, 3.0), b=(2.0, 2.0, 1.0))  # per-round ratios 0.5, 2, 3
    assert t.ratio == 2.0  # not the ratio of medians (3 / 2)
    assert t.spread == (1.25, 2.5)  # the interquartile range of 0.5, 2, 3
    row = t.row("a", "b", "<= 1", "s")
    assert (row.ratio, row.shapeviz, row.other, row.unit, row.spread) == (2.0, 3.0, 2.0, "s", (1.25, 2.5))
    assert row.value_spread == (2.0, 3.5)  # shapeviz's own values 1, 4, 3
    assert Rounds((1e-6, 3e-6), (2e-6, 2e-6)).row("a", "b", "").shapeviz == 2.0  # µs by default


def test_interleaved_rounds_alternate_the_order_and_time_with_gc_off() -> None:
    log: list[str] = []
    ticks = iter(range(1000))
    gc_during: list[bool] = []

    def clock() -> float:
        gc_during.append(gc.isenabled())
        return float(next(ticks))

    rows = rounds_of([lambda: log.append("a"), lambda: log.append("b"), lambda: log.append("c")], 2, rounds=3,
                     clock=clock)
    assert "".join(log) == "abc" + "aabbcc" + "ccbbaa" + "aabbcc"  # warm-up, then alternating rounds
    assert rows == [(0.5, 0.5, 0.5)] * 3  # each side: one tick per 2 calls
    assert gc_during and not any(gc_during) and gc.isenabled()


def test_interleaved_measures_the_threads_cpu_time_by_default() -> None:
    assert rounds_of.__defaults__ is not None and time.thread_time in rounds_of.__defaults__
    assert interleaved.__defaults__ is not None and time.thread_time in interleaved.__defaults__


def test_interleaved_enters_a_context_around_one_side_only() -> None:
    state = {"inside": False}
    seen: dict[str, list[bool]] = {"ours": [], "other": []}

    class Inside:
        def __enter__(self) -> None:
            state["inside"] = True

        def __exit__(self, *exc: object) -> None:
            state["inside"] = False

    ticks = iter(range(1000))
    t = interleaved(lambda: seen["ours"].append(state["inside"]), lambda: seen["other"].append(state["inside"]),
                    3, rounds=2, around_ours=Inside, clock=lambda: float(next(ticks)))
    assert t.rounds == 2 and all(seen["ours"]) and not any(seen["other"])
    assert len(seen["ours"]) == 1 + 2 * (1 + 3)  # warm-up, then per round: one untimed call and 3 timed
    assert len(seen["other"]) == 1 + 2 * 3


@pytest.mark.parametrize(("target", "spread", "expected"), [
    ("<= 1.03", (0.98, 1.02), "met"),
    ("<= 1.03", (0.98, 1.03), "met"),
    ("<= 1.03", (0.99, 1.05), "unclear"),
    ("<= 1.03", (1.04, 1.08), "missed"),
    ("< 1.0", (0.5, 0.99), "met"),
    ("< 1.0", (0.5, 1.0), "unclear"),
    ("< 1.0", (1.0, 1.2), "missed"),
    ("< 1.0 (< 2 s)", (0.1, 0.2), "met"),
    ("info", (0.1, 0.2), "info"),
    ("~1.0", (0.9, 1.1), "info"),
    ("O(1) each", (0.9, 1.1), "info"),
])
def test_verdict_judges_the_whole_spread(target: str, spread: tuple[float, float], expected: str) -> None:
    row = Row("a", "b", 1.0, 1.0, target, median_ratio=sum(spread) / 2, spread=spread)
    assert runner.verdict(row) == expected


def test_a_bound_in_units_judges_shapevizs_own_values() -> None:
    fast = budget([0.2, 0.25, 0.3], 1.0).row("a", "target", "< 1 s", "s")
    assert runner.verdict(fast) == "met"
    edge = budget([0.2, 0.3, 0.35, 0.4], 0.3).row("a", "target", "<= 0.3 s", "s")
    assert runner.verdict(edge) == "unclear"
    assert runner.verdict(Row("a", "b", 0.4, 0.1, "<= 0.3 s", "s")) == "missed"  # ratio 4 is not what counts
    assert runner.verdict(Row("a", "b", 296.0, 294.0, "< 1 GB", "MB", value_spread=(295.0, 297.0))) == "met"
    assert runner.verdict(Row("a", "b", 2000.0, 294.0, "< 1 GB", "MB", value_spread=(1900.0, 2100.0))) == "missed"
    assert runner.verdict(Row("a", "b", 0.5, 1.0, "< 2 ms", "µs")) == "met"  # 0.5 µs


def test_the_table_shows_each_ratio_with_its_spread() -> None:
    import io

    out = io.StringIO()
    runner.print_rows([Rounds((0.98, 0.96, 1.01), (1.0, 1.0, 1.0)).row("w", "p", "<= 1.03", "s"),
                       Row("x", "y", 1.0, 2.0, "info"),
                       budget([0.02, 0.025, 0.03], 1.0).row("u", "target", "< 1 s", "s")], out, met=True)
    lines = out.getvalue().splitlines()
    assert lines[0] == "| shapeviz measures | compared with | shapeviz | other | ratio (spread) | target | met? |"
    assert lines[2] == "| w | p | 0.980 s | 1.000 s | 0.98 (0.97–0.995) | <= 1.03 | met |"
    assert lines[3] == "| x | y | 1.00 µs | 2.00 µs | 0.5 | info | info |"  # one measurement: no spread
    assert lines[4] == "| u | target | 0.025 s (0.022 s–0.028 s) | 1.000 s | 0.025 (0.0225–0.0275) | < 1 s | met |"
    assert runner.tally([Rounds((0.98, 0.96, 1.01), (1.0, 1.0, 1.0)).row("w", "p", "<= 0.98")]) == (
        "met 0, missed 0, unclear 1, info 0, skipped 0")


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
    page = tmp_path / "README.md"
    page.write_text(f"# b\n\nreading\n\n{runner.MARK}\nold stamp\n\n| old | table |\n\nafter\n",
                    encoding="utf-8")
    rows = [Row("a", "b", 1.0, 2.0, "<= 0.5"), Row("c", "d", 3.0, 2.0, "<= 1.0"),
            Rounds((0.9e-6, 1.1e-6, 1.0e-6), (1e-6, 1e-6, 1e-6)).row("e", "f", "<= 1.05")]
    runner.write_readme(rows, "new stamp", page)
    text = page.read_text(encoding="utf-8")
    assert text.startswith(f"# b\n\nreading\n\n{runner.MARK}\nnew stamp\n\n| shapeviz measures")
    assert "| a | b | 1.00 µs | 2.00 µs | 0.5 | <= 0.5 | met |" in text
    assert "| c | d | 3.00 µs | 2.00 µs | 1.5 | <= 1.0 | missed |" in text
    assert "| e | f | 1.00 µs | 1.00 µs | 1 (0.95–1.05) | <= 1.05 | met |" in text
    assert text.endswith("\nafter\n") and "old" not in text
    assert (Path(runner.__file__).parent / "README.md").read_text(encoding="utf-8").count(runner.MARK) == 1
