"""dry_run of a ~1.9 B-parameter language model and a ~1.4 B-parameter two-input seq2seq, built on
``meta``: time and peak memory.

>>> rows = run(quick=True)  # doctest: +SKIP
>>> rows[0].what.startswith("dry_run")  # doctest: +SKIP
True

The model: ``Embedding(50000, 2048)`` -> 4-layer bidirectional ``LSTM(2048, 4096)`` ->
``Linear(8192, 50000)``, 1.92 B parameters (7.7 GB in float32 if it were real), built under
``with torch.device("meta"):``, dry-run with tokens ``(bs=32, T=35)``. Compared with

* the same forward on ``meta`` without shapeviz (PyTorch's meta kernels; the LSTM's runs step by
  step, so this is the honest "no shapeviz" baseline for the same question);
* a real CPU forward of the same architecture at 1/8 of the width (``Embedding(50000, 256)``,
  ``LSTM(256, 512, 4, bidirectional)``, ``Linear(1024, 50000)``, 86 M parameters): what a smoke
  test with real tensors costs even after shrinking the model;
* the same three for :class:`Seq2Seq`: ``Embedding(50000, 2048)`` x 2, a 4-layer ``LSTM(2048, 4096)``
  encoder whose ``(h_n, c_n)`` start a 4-layer ``LSTM(2048, 4096)`` decoder (teacher forcing: the whole
  ``trg`` in one call), ``Linear(4096, 50000)``: 1.42 B parameters, two token inputs ``src (bs=32,
  T=35)`` and ``trg (bs=32, T=30)``, dry-run as ``dry_run(model, src="bs=32,T=35", trg="bs=32,T=30")``;
* the first dry run in a fresh process (wall time inside that process) against its own import of torch
  and shapeviz, three fresh processes of each kind;
* peak RSS, each measured in a fresh subprocess (``VmHWM`` on Linux, else ``resource.getrusage``;
  see :func:`peak_rss_mb`): the dry run vs a process that imports torch and shapeviz and builds
  the meta model but runs nothing.
"""

from __future__ import annotations

import subprocess
import sys

import torch
import torch.nn as nn

from bench.common import Rounds, Row, interleaved

BS, T = 32, 35
VOCAB, EMB, HIDDEN, LAYERS = 50000, 2048, 4096, 4


class LM(nn.Module):
    """tokens (bs, T) -> Embedding -> biLSTM(batch_first) -> Linear: (bs, T, vocab)."""

    def __init__(self, vocab: int = VOCAB, emb: int = EMB, hidden: int = HIDDEN, layers: int = LAYERS) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, layers, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(tokens))  # (bs, T, 2*hidden)
        return self.head(out)  # (bs, T, vocab)


class Seq2Seq(nn.Module):
    """src (bs, T_src), trg (bs, T_trg) tokens -> encoder; its (h_n, c_n) start the decoder -> (bs, T_trg, vocab)."""

    def __init__(self, vocab: int = VOCAB, emb: int = EMB, hidden: int = HIDDEN, layers: int = LAYERS) -> None:
        super().__init__()
        self.src_embedding, self.trg_embedding = nn.Embedding(vocab, emb), nn.Embedding(vocab, emb)
        self.encoder = nn.LSTM(emb, hidden, layers, batch_first=True)
        self.decoder = nn.LSTM(emb, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, src: torch.Tensor, trg: torch.Tensor) -> torch.Tensor:
        _, state = self.encoder(self.src_embedding(src))  # (h_n, c_n): (layers, bs, hidden)
        out, _ = self.decoder(self.trg_embedding(trg), state)  # teacher forcing: trg in one call
        return self.head(out)  # (bs, T_trg, vocab)


T_TRG = 30
SPECS = {"lm": ((f"bs={BS},T={T}",), {}), "seq2seq": ((), {"src": f"bs={BS},T={T}", "trg": f"bs={BS},T={T_TRG}"})}


def meta_lm() -> LM:
    with torch.device("meta"):
        return LM()


def meta_seq2seq() -> Seq2Seq:
    with torch.device("meta"):
        return Seq2Seq()


_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from bench.bench_dry_run import SPECS, meta_{which}, peak_rss_mb
from shapeviz.runtime.dryrun import dry_run
t1 = time.perf_counter()
model = meta_{which}()
t2 = time.perf_counter()
if {forward}:
    args, kwargs = SPECS[{which!r}]
    run = dry_run(model, *args, **kwargs)
    assert run.ok, run
t3 = time.perf_counter()
print(peak_rss_mb(), t1 - t0, t2 - t1, t3 - t2)
"""


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    ``VmHWM`` where Linux has it: ``getrusage``'s ``ru_maxrss`` is carried over from the parent
    across fork and exec there, so a child started by a big benchmark process would report the
    parent's peak. Elsewhere ``resource.getrusage(RUSAGE_SELF).ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS, KiB on Linux


def _child(forward: bool, which: str = "lm") -> tuple[float, ...]:
    """(peak RSS in MB, seconds to import torch and shapeviz, to build the model, to dry-run it) of a
    fresh process."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = _CHILD.format(root=root, forward=forward, which=which)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return tuple(float(v) for v in out.stdout.split())


def _rows(which: str, quick: bool) -> list[Row]:
    """dry_run vs a plain meta forward, vs a real forward at 1/8 width; a fresh process's cold dry run and
    peak RSS vs doing nothing. In-process rows: the calling thread's CPU time in interleaved rounds."""
    from shapeviz.runtime.dryrun import dry_run

    rounds = 2 if quick else 5
    slow = 1 if quick else 3  # rounds of the real forward: it takes seconds per call
    fresh = 1 if quick else 3  # rounds of fresh processes (each imports torch)
    children = [(_child(forward=True, which=which), _child(forward=False, which=which)) for _ in range(fresh)]
    rss = Rounds(tuple(d[0] for d, _ in children), tuple(b[0] for _, b in children))
    cold = Rounds(tuple(d[3] for d, _ in children), tuple(d[1] for d, _ in children))
    model = meta_lm() if which == "lm" else meta_seq2seq()
    args, kwargs = SPECS[which]
    n_params = sum(p.numel() for p in model.parameters())
    given = ", ".join([*args, *(f"{k}=({v})" for k, v in kwargs.items())]).replace(",T=", ", T=")
    label = (f"dry_run, meta LM {n_params / 1e9:.2f} B params, tokens (bs={BS}, T={T})" if which == "lm" else
             f"dry_run, meta seq2seq {n_params / 1e9:.2f} B params, two inputs {given}")
    sizes = [(BS, T)] if which == "lm" else [(BS, T), (BS, T_TRG)]
    tokens = [torch.zeros(*shape, dtype=torch.long, device="meta") for shape in sizes]
    small = (LM if which == "lm" else Seq2Seq)(emb=EMB // 8, hidden=HIDDEN // 8).eval()
    real = [torch.zeros(*shape, dtype=torch.long) for shape in sizes]

    def dry() -> object:
        return dry_run(model, *args, **kwargs)

    with torch.no_grad():
        vs_meta = interleaved(dry, lambda: model(*tokens), 1, rounds)
        vs_real = interleaved(dry, lambda: small(*real), 1, slow)
    small_params = sum(p.numel() for p in small.parameters())
    name = "LM" if which == "lm" else "seq2seq"
    return [
        vs_meta.row(label, "the same forward on meta without shapeviz (torch meta kernels)", "< 2 s", "s"),
        vs_real.row(label, f"real CPU forward at 1/8 width ({small_params / 1e6:.0f} M params)", "info", "s"),
        cold.row(f"first dry_run of the meta {name} in a fresh process (cold caches)",
                 "import torch + shapeviz in that process", "< 2 s", "s"),
        rss.row(f"peak RSS of a process that builds the meta {name} and dry-runs it",
                "the same process without the dry run", "< 1 GB", "MB"),
    ]


def run(quick: bool = False) -> list[Row]:
    """The rows of the language model, then those of the two-input seq2seq."""
    return _rows("lm", quick) + _rows("seq2seq", quick)


if __name__ == "__main__":
    for r in run():
        print(f"{r.what} | {r.compared_with} | {r.shapeviz:.3f} {r.unit} | {r.other:.3f} {r.unit} | "
              f"ratio {r.ratio:.3g} | {r.target}")
