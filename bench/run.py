"""Run every benchmark in one process and print one markdown table of ratios.

    python -m bench            # full run (a few minutes on 2 cores)
    python -m bench --quick    # fewer repetitions
    python -m bench --only procs,bench_check
    python -m bench --write    # and put the table into bench/README.md

Every row is a ratio measured side by side in this one run, with one torch thread. Rows that need
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
           "bench.bench_unroll", "bench.bench_dry_run", "bench.bench_compile", "bench.bench_flow")


def fmt(v: float, unit: str) -> str:
    if unit == "MB":
        return f"{v:.0f} MB"
    if unit == "s":
        return f"{v:.3f} s"
    return f"{v:.2f} µs" if v < 1000 else f"{v / 1000:.2f} ms"


def verdict(r: Row) -> str:
    """``met``/``missed`` for a ratio target such as ``<= 1.03`` or ``< 1.0``; ``info`` otherwise.

    >>> verdict(Row("a", "b", 1.0, 1.0, "<= 1.03")), verdict(Row("a", "b", 2.0, 1.0, "< 1.0"))
    ('met', 'missed')
    """
    target = r.target.split("(")[0].strip()
    for op, ok in (("<=", lambda a, b: a <= b), ("<", lambda a, b: a < b)):
        if target.startswith(op):
            try:
                limit = float(target[len(op):].strip())
            except ValueError:
                return "info"
            return "met" if ok(r.ratio, limit) else "missed"
    return "info"


def print_rows(rows: list[Row], out: TextIO | None = None, met: bool = False) -> None:
    out = out or sys.stdout
    extra, rule = (" met? |", "---|") if met else ("", "")
    out.write(f"| shapeviz measures | compared with | shapeviz | other | ratio | target |{extra}\n")
    out.write(f"|---|---|---:|---:|---:|---|{rule}\n")
    for r in rows:
        tail = f" {verdict(r)} |" if met else ""
        if r.skipped:
            out.write(f"| {r.what} | {r.compared_with} | | | {r.skipped} | {r.target} |{' skipped |' if met else ''}\n")
            continue
        out.write(f"| {r.what} | {r.compared_with} | {fmt(r.shapeviz, r.unit)} | {fmt(r.other, r.unit)} "
                  f"| {r.ratio:.3g} | {r.target} |{tail}\n")


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
    print("ratio = shapeviz / other (lower is better for shapeviz); whole-process rows: the median of "
          "per-round ratios of interleaved runs\n")
    print_rows(rows, met=True)
    if args.write and not failed:
        write_readme(rows, stamp)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
