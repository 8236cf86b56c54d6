"""Run every benchmark in one process and print one markdown table of ratios.

    python -m bench            # full run (16 minutes on a loaded 2-core machine)
    python -m bench --quick    # fewer repetitions
    python -m bench --only procs,bench_check
    python -m bench --write    # and put the table into bench/README.md

Every row is a ratio measured side by side in this one run, with one torch thread: in-process rows by
the calling thread's CPU time in interleaved rounds (bench.common.interleaved), whole-process rows by
wall time in interleaved rounds; each ratio is the median of per-round ratios with their interquartile
range, and a target is met (or missed) only when that whole range is within (or beyond) it. Rows that need
the bench extra (torchinfo, torchview) say "skipped: pip install -e .[bench]" when it is missing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import platform
import sys
import traceback
from pathlib import Path
from typing import TextIO

import torch

from bench.common import BENCH_EXTRA, Row, skipped_row

MODULES = ("bench.procs", "bench.bench_check", "bench.bench_watch", "bench.bench_typing", "bench.bench_trace",
           "bench.bench_unroll", "bench.bench_dry_run", "bench.bench_compile", "bench.bench_flow",
           "bench.bench_declared")


def fmt(v: float, unit: str) -> str:
    """One value in its unit.

    >>> fmt(1234.5, "µs"), fmt(0.0251, "s"), fmt(296.4, "MB")
    ('1.23 ms', '0.025 s', '296 MB')
    """
    if unit == "MB":
        return f"{v:.0f} MB"
    if unit == "s":
        return f"{v:.3f} s"
    return f"{v:.2f} µs" if v < 1000 else f"{v / 1000:.2f} ms"


UNITS = {"µs": 1e-6, "ms": 1e-3, "s": 1.0, "MB": 1.0, "GB": 1024.0}
"""A target's unit in the base unit of its kind (seconds, MB)."""


def parse_target(target: str) -> tuple[str, float, str] | None:
    """``(op, limit, unit)`` of a target such as ``<= 1.03`` (unit ``""``: a ratio) or ``< 2 s``; None for
    targets that are not a bound (``info``, ``~1.0``, ``O(1) each``). A parenthesis is a comment.

    >>> parse_target("<= 1.03"), parse_target("< 1.0 (< 2 s)"), parse_target("< 1 GB"), parse_target("info")
    (('<=', 1.03, ''), ('<', 1.0, ''), ('<', 1.0, 'GB'), None)
    """
    text = target.split("(")[0].strip()
    for op in ("<=", "<"):
        if text.startswith(op):
            number, _, unit = text[len(op):].strip().partition(" ")
            try:
                limit = float(number)
            except ValueError:
                return None
            unit = unit.strip()
            return (op, limit, unit) if unit in UNITS or not unit else None
    return None


def bounds(r: Row, unit: str = "") -> tuple[float, float]:
    """The interval a target is judged on: the ratio's spread (or the ratio itself), or for a target in
    ``unit`` shapeviz's own values' spread (or its value) in that unit.

    >>> bounds(Row("a", "b", 2.0, 1.0, "<= 1", spread=(1.5, 2.5)))
    (1.5, 2.5)
    >>> bounds(Row("a", "b", 250.0, 1.0, "< 1 GB", unit="MB"), "GB")
    (0.244140625, 0.244140625)
    """
    if not unit:
        return r.spread if r.spread is not None else (r.ratio, r.ratio)
    lo, hi = r.value_spread if r.value_spread is not None else (r.shapeviz, r.shapeviz)
    k = UNITS.get(r.unit, 1.0) / UNITS[unit]
    return lo * k, hi * k


def verdict(r: Row) -> str:
    """``met`` when the whole spread is within a bound such as ``<= 1.03`` or ``< 2 s``, ``missed`` when the
    whole spread is beyond it, ``unclear`` when the spread straddles it; ``info`` for other targets.

    >>> verdict(Row("a", "b", 1.0, 1.0, "<= 1.03")), verdict(Row("a", "b", 2.0, 1.0, "< 1.0"))
    ('met', 'missed')
    >>> verdict(Row("a", "b", 1.0, 1.0, "<= 1.03", spread=(0.99, 1.04)))
    'unclear'
    >>> verdict(Row("a", "b", 0.03, 1.0, "< 1 s", unit="s")), verdict(Row("a", "b", 1.0, 1.0, "~1.0"))
    ('met', 'info')
    """
    bound = parse_target(r.target)
    if bound is None:
        return "info"
    op, limit, unit = bound
    lo, hi = bounds(r, unit)
    if op == "<=":
        return "met" if hi <= limit else "missed" if lo > limit else "unclear"
    return "met" if hi < limit else "missed" if lo >= limit else "unclear"


def ratio_cell(r: Row) -> str:
    """The median ratio and, where rounds were measured, its spread.

    >>> ratio_cell(Row("a", "b", 1.0, 1.0, "", median_ratio=0.98, spread=(0.962, 1.013)))
    '0.98 (0.962–1.01)'
    """
    if r.spread is None:
        return f"{r.ratio:.3g}"
    lo, hi = r.spread
    return f"{r.ratio:.3g} ({lo:.3g}–{hi:.3g})"


def value_cell(r: Row) -> str:
    """shapeviz's value, with its spread when the target bounds the value itself (e.g. ``< 2 s``).

    >>> value_cell(Row("a", "b", 0.025, 1.0, "< 1 s", "s", value_spread=(0.024, 0.026)))
    '0.025 s (0.024 s–0.026 s)'
    """
    bound = parse_target(r.target)
    if bound is None or not bound[2] or r.value_spread is None:
        return fmt(r.shapeviz, r.unit)
    lo, hi = r.value_spread
    return f"{fmt(r.shapeviz, r.unit)} ({fmt(lo, r.unit)}–{fmt(hi, r.unit)})"


def print_rows(rows: list[Row], out: TextIO | None = None, met: bool = False) -> None:
    """The markdown table (with the verdict column when ``met``).

    >>> print_rows([Row("a", "b", 1.0, 2.0, "<= 0.6", spread=(0.45, 0.55))], met=True)
    | shapeviz measures | compared with | shapeviz | other | ratio (spread) | target | met? |
    |---|---|---:|---:|---:|---|---|
    | a | b | 1.00 µs | 2.00 µs | 0.5 (0.45–0.55) | <= 0.6 | met |
    """
    out = out or sys.stdout
    extra, rule = (" met? |", "---|") if met else ("", "")
    out.write(f"| shapeviz measures | compared with | shapeviz | other | ratio (spread) | target |{extra}\n")
    out.write(f"|---|---|---:|---:|---:|---|{rule}\n")
    for r in rows:
        tail = f" {verdict(r)} |" if met else ""
        if r.skipped:
            out.write(f"| {r.what} | {r.compared_with} | | | {r.skipped} | {r.target} |{' skipped |' if met else ''}\n")
            continue
        out.write(f"| {r.what} | {r.compared_with} | {value_cell(r)} | {fmt(r.other, r.unit)} "
                  f"| {ratio_cell(r)} | {r.target} |{tail}\n")


def tally(rows: list[Row]) -> str:
    """How many rows got each verdict.

    >>> tally([Row("a", "b", 1.0, 2.0, "<= 1"), Row("c", "d", 1.0, 1.0, "info")])
    'met 1, missed 0, unclear 0, info 1, skipped 0'
    """
    counts = dict.fromkeys(("met", "missed", "unclear", "info", "skipped"), 0)
    for r in rows:
        counts["skipped" if r.skipped else verdict(r)] += 1
    return ", ".join(f"{k} {v}" for k, v in counts.items())


MARK = "<!-- the table below is written by python -m bench --write -->"


def write_readme(rows: list[Row], stamp: str, path: Path = Path(__file__).parent / "README.md") -> None:
    """Replace the table after :data:`MARK` in ``bench/README.md`` (the stamp line, then the table)."""
    import io

    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition(MARK + "\n")
    if not _:
        raise SystemExit(f"{path} has no line {MARK!r}: cannot place the table")
    parts = rest.split("\n\n", 2)  # the stamp line, the table, what follows
    tail = parts[2] if len(parts) == 3 else ""
    table = io.StringIO()
    print_rows(rows, table, met=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(f"{head}{MARK}\n{stamp}\n\n{table.getvalue()}\n{tail}", encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repetitions (noisier numbers)")
    p.add_argument("--only", default="", help="comma-separated module names, e.g. bench_check")
    p.add_argument("--write", action="store_true", help="also write the table into bench/README.md")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows: list[Row] = []
    failed = []
    for name in MODULES:
        if args.only and name.split(".")[-1] not in args.only.split(","):
            continue
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # that benchmark does not exist (yet)
            if e.name in BENCH_EXTRA:
                rows.append(skipped_row(name, f"needs {e.name}"))
                continue
            raise
        try:
            rows.extend(mod.run(quick=args.quick) if "quick" in mod.run.__code__.co_varnames else mod.run())
        except Exception as e:
            if isinstance(e, ModuleNotFoundError) and e.name in BENCH_EXTRA:
                rows.append(skipped_row(name, f"needs {e.name}"))
                continue
            failed.append(name)
            traceback.print_exc()
    stamp = (f"shapeviz benchmarks, {datetime.date.today().isoformat()}, {platform.machine()}, "
             f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
             f"Python {platform.python_version()}")
    print(stamp)
    print("ratio = shapeviz / other (lower is better for shapeviz): the median of per-round ratios of "
          "interleaved rounds, in brackets their interquartile range; met/missed only when that whole range is "
          "within/beyond the target, else unclear\n")
    print_rows(rows, met=True)
    print("\n" + tally(rows))
    if args.write and not failed:
        write_readme(rows, stamp)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
