"""Run every benchmark in one process and print one markdown table of ratios.

    python -m bench            # full run (a few minutes on 2 cores)
    python -m bench --quick    # fewer repetitions
    python -m bench --only procs,bench_check

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


def print_rows(rows: list[Row], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    out.write("| shapeviz measures | compared with | shapeviz | other | ratio | target |\n")
    out.write("|---|---|---:|---:|---:|---|\n")
    for r in rows:
        if r.skipped:
            out.write(f"| {r.what} | {r.compared_with} | | | {r.skipped} | {r.target} |\n")
            continue
        out.write(f"| {r.what} | {r.compared_with} | {fmt(r.shapeviz, r.unit)} | {fmt(r.other, r.unit)} "
                  f"| {r.ratio:.3g} | {r.target} |\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repetitions (noisier numbers)")
    p.add_argument("--only", default="", help="comma-separated module names, e.g. bench_check")
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
    stamp = datetime.date.today().isoformat()
    print(f"shapeviz benchmarks, {stamp}, {platform.machine()}, {platform.processor() or 'cpu'}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, Python {platform.python_version()}")
    print("ratio = shapeviz / other (lower is better for shapeviz); whole-process rows: the median of "
          "per-round ratios of interleaved runs\n")
    print_rows(rows)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
