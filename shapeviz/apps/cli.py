"""The ``shapeviz`` command line: explain, draw, trace, check, gallery, demo.

>>> main(["explain", "GRUCell(8, 16)", "--bs", "4"])          # doctest: +NORMALIZE_WHITESPACE
GRUCell(8, 16)
  emb=8  h=16  bs=4
        argument  shape      with sizes
  in    input     (bs, emb)  (bs=4, emb=8)
  in    h_0       (bs, h)    (bs=4, h=16)
  out   h_1       (bs, h)    (bs=4, h=16)
  unbatched: input (emb,) -> h_1 (h,); state (h,)
notes
  * a cell takes ONE time step: for x_t in x:  # x (T, bs, emb) -> x_t (bs, emb); h = cell(x_t, h)
  * its state is (bs, h): no layers or directions dim, unlike nn.GRU's (layers*D, bs, h)
0

``main(argv)`` returns the exit code instead of exiting, so it can run in-process; the
``shapeviz`` script and ``python -m shapeviz`` exit with it. See :data:`EPILOG` for the codes.
torch is imported only by the commands that need it: ``--help`` and usage errors never load it,
and only the command being run gets its options parsed (:func:`build_parser`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from shapeviz._errors import MissingBackendError, ShapeError, ShapevizError
from shapeviz.apps.failures import (
    EXIT_BACKEND,
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_SHAPE,
    EXIT_USAGE,
    EXIT_USER_CODE,
    UsageError,
    encodable_output,
    exit_code,
    sigterm_unwinds,
    user_code,
    writable_output,
)

if TYPE_CHECKING:
    from argparse import _SubParsersAction  # what add_subparsers returns

    import torch.nn as nn

__all__ = ["EPILOG", "EXIT_BACKEND", "EXIT_BROKEN_PIPE", "EXIT_INTERNAL", "EXIT_OK", "EXIT_SHAPE", "EXIT_USAGE",
           "EXIT_USER_CODE", "MAX_STEPS", "main"]

MAX_STEPS = 200
"""The largest ``draw --max-steps``: wider diagrams are unreadable and slow to lay out."""

EPILOG = """\
exit codes:
  0  ok
  1  a shape error was found (check, trace): the ShapeError message is printed
  2  usage error: bad command, option, SPEC, --input (too large to allocate), an output path that
     cannot be written (suffix, folder, permission, name), a diagram too big to draw, file or factory name
  3  your code raised or called sys.exit: importing FILE.py, calling FACTORY() or the forward pass
     (not a ShapeError)
  4  no Graphviz dot program to render with (install graphviz or pip install graphviz-pure), or it
     failed or ran past its time limit
  5  shapeviz itself failed (a bug: please report it with the command line)
  130, 143  interrupted (Ctrl-C) or terminated (SIGTERM); a running dot program is stopped too
  141  the output pipe closed early (e.g. | head -1): stopped quietly, as Unix tools stopped by SIGPIPE

Characters the terminal's encoding cannot show are printed as ASCII (an arrow as ->) or as ?.

SPEC is a layer written as in Python, e.g. "LSTM(10, 20, num_layers=2, bidirectional=True)" or
"GRUCell(8, 16)": one of RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell with literal arguments. It
is parsed, never evaluated. `trace` and `check` IMPORT your FILE.py (running its top-level code)
and call FACTORY() to build the model.

start here:  shapeviz demo"""

_INPUT_HELP = """how to make the model's input from named sizes, in layout order:
  "bs=2,T=5,vocab=28"  -> token ids, a LongTensor (bs, T) in [0, vocab)
  "T=5,bs=2,emb=10"    -> floats (T, bs, emb)
  "bs=2,T=5"           -> decided by the model's first layer with weights (named_modules
                          order; a recurrent layer counts whole): an Embedding(num, dim) gets
                          token ids in [0, num); a recurrent layer gets floats with
                          emb=input_size appended; any other, floats of exactly these dims.
names are T, bs, emb, vocab; values come from a fixed seed (randn / randint), so runs repeat."""


def _columns() -> int:
    """The terminal's width as :func:`shutil.get_terminal_size` finds it: ``COLUMNS``, stdout's, else 80.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"COLUMNS": "100"}):
    ...     _columns()
    100

    argparse asks shutil, whose import (zlib, bz2, lzma) costs ``shapeviz --help`` more than its parser.
    """
    with contextlib.suppress(KeyError, ValueError):
        if (columns := int(os.environ["COLUMNS"])) > 0:
            return columns
    stdout = sys.__stdout__
    try:
        return (os.get_terminal_size(stdout.fileno()).columns if stdout else 0) or 80
    except (AttributeError, ValueError, OSError):  # not a terminal, or a stream without a file
        return 80


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help layout (descriptions as written), as wide as the terminal found without shutil."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width,
                         **kwargs)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main(argv)`` returns the code."""

    commands: dict[str, _Parser]
    """The parser of each subcommand (on the top-level parser only)."""

    def _print_message(self, message: str, file: Any = None) -> None:
        # argparse's own swallows OSError: help into a closed pipe must end as any output does (141)
        if message:
            (file or sys.stderr).write(message)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(f"{self.prog}: error: {message}\n(run '{self.prog} --help' for the valid options)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _steps(text: str) -> int:
    value = _positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"--max-steps must be at least 2, got {value}")
    if value > MAX_STEPS:
        raise argparse.ArgumentTypeError(f"--max-steps must be at most {MAX_STEPS}, got {value} (the steps "
                                         "beyond it are drawn as one ellipsis column)")
    return value


def _explain_parser(sub: _SubParsersAction[_Parser], name: str, what: str) -> None:
    e = sub.add_parser(name, help=what, formatter_class=_Formatter,
                       description="Print the conventions table of a layer: every argument and result "
                                   "in named dims, with sizes when --T/--bs are given.",
                       epilog='example: shapeviz explain "LSTM(10, 20, num_layers=2)" --T 5 --bs 3')
    e.add_argument("spec", metavar="SPEC", help='a layer, e.g. "LSTM(10, 20, num_layers=2, bidirectional=True)"')
    e.add_argument("--T", type=_positive, help="sequence length")
    e.add_argument("--bs", type=_positive, help="batch size")
    e.add_argument("--style", choices=("named", "torch", "seeds"), default="named",
                   help="dimension names: named (T, bs, emb, h; default) or torch (L, N, H_in, H_out); "
                        "seeds is the old name of named")


def _draw_parser(sub: _SubParsersAction[_Parser], name: str, what: str) -> None:
    d = sub.add_parser(name, help=what, formatter_class=_Formatter,
                       description="Draw a layer unrolled over time and write it to FILE.svg or FILE.png "
                                   "(needs Graphviz dot or graphviz-pure).",
                       epilog='example: shapeviz draw "GRU(8, 16, batch_first=True)" --T 4 --bs 2 -o gru.svg')
    d.add_argument("spec", metavar="SPEC", help='a layer, e.g. "GRUCell(8, 16)"')
    d.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.svg or FILE.png")
    d.add_argument("--T", type=_positive, help="sequence length")
    d.add_argument("--bs", type=_positive, help="batch size")
    d.add_argument("--max-steps", type=_steps,
                   help=f"draw at most this many time steps, 2 to {MAX_STEPS} (the middle is elided)")


def _model_parser(sub: _SubParsersAction[_Parser], name: str, what: str) -> None:
    """``trace`` or ``check``: the commands that import the user's FILE.py."""
    import textwrap

    c = sub.add_parser(name, help=what, formatter_class=_Formatter,
                       description=textwrap.fill(f"{what[0].upper()}{what[1:]}. IMPORTS FILE.py (its top-level "
                                                 "code runs) and calls FACTORY() with no arguments to build "
                                                 "the model.", 90),
                       epilog=f'{_INPUT_HELP}\n\nexample: shapeviz {name} model.py:build --input "bs=2,T=5,vocab=28"')
    c.add_argument("target", metavar="FILE.py:FACTORY", help="your file and a function in it returning the model")
    c.add_argument("--input", required=True, metavar="SIZES",
                   help='named sizes in layout order (T, bs, emb, vocab), e.g. "bs=2,T=5"')
    if name == "check":
        c.add_argument("--meta", action="store_true",
                       help="dry run on the meta device: no computation, no memory for activations "
                            "(real weights get meta stand-ins; the model is not changed)")
    if name == "trace":
        c.add_argument("--ops", action="store_true", help="also record the torch operations your code runs")
        c.add_argument("-o", "--output", metavar="FILE",
                       help="trace.json (JSON), table.txt (text table) or plot.png/.svg (figure); "
                            "default: print the table")


def _gallery_parser(sub: _SubParsersAction[_Parser], name: str, what: str) -> None:
    g = sub.add_parser(name, help=what, formatter_class=_Formatter,
                       description="Rebuild the gallery: one folder per example with unrolled.svg/.png/.dot "
                                   "and README.md, plus an index README.md.")
    g.add_argument("outdir", nargs="?", default="gallery", metavar="OUTDIR", help="where to write (default: gallery)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _site_parser(sub: _SubParsersAction[_Parser], name: str, what: str) -> None:
    st = sub.add_parser(name, help=what, formatter_class=_Formatter,
                        description="Write a static site (plain files: open index.html, or host the folder "
                                    "anywhere static): every gallery page as HTML and the conventions explorer.")
    st.add_argument("outdir", metavar="DIR", help="where to write the site")
    st.add_argument("--force", action="store_true",
                    help="write into an empty path or a folder that holds other files (the site never "
                         "overwrites a file it did not write)")
    st.add_argument("--quiet", action="store_true", help="no progress bar")


def _demo_parser(sub: _SubParsersAction[_Parser], name: str, what: str) -> None:
    m = sub.add_parser(name, help=what, formatter_class=_Formatter,
                       description="Run the classic textbook RNN examples with checking on, show one real "
                                   "caught mistake with its hint, and write a few diagrams.")
    m.add_argument("-o", "--outdir", default="shapeviz-demo", metavar="DIR",
                   help="where to write the diagrams (default: ./shapeviz-demo)")


_PARSERS: dict[str, tuple[str, Callable[[_SubParsersAction[_Parser], str, str], None]]] = {
    "explain": ("print the shape conventions of a layer", _explain_parser),
    "draw": ("write the unrolled diagram of a layer (.svg or .png)", _draw_parser),
    "trace": ("trace a forward pass of your model: every module call in named dims", _model_parser),
    "check": ("run a forward pass of your model with shape checking on", _model_parser),
    "gallery": ("rebuild the gallery (diagrams, tables, code)", _gallery_parser),
    "site": ("write the gallery and the conventions explorer as a static site", _site_parser),
    "demo": ("classic RNN examples checked, one caught mistake, a few diagrams", _demo_parser),
}
"""Each command's one-line help (``shapeviz --help`` lists them in this order) and what adds its parser."""


def build_parser(argv: Sequence[str] | None = None) -> _Parser:
    """The argument parser of every command (``--help`` on each); with ``argv``, of the commands it names.

    >>> sorted(build_parser().commands)    # the commands
    ['check', 'demo', 'draw', 'explain', 'gallery', 'site', 'trace']
    >>> p = build_parser(["explain", "LSTM(10, 20)", "--T", "5"])
    >>> p.commands["draw"].format_usage(), "--style" in p.commands["explain"].format_usage()
    ('usage: shapeviz draw\\n', True)

    The commands ``argv`` does not name get an empty parser, with their one-line help for ``shapeviz
    --help`` and a bad command's error: argparse hands arguments only to the command a word of ``argv``
    names in full, so an empty one never parses, and ``shapeviz --help`` builds no command's options.
    """
    from shapeviz import __version__

    named = _PARSERS.keys() if argv is None else set(argv)
    p = _Parser(prog="shapeviz", formatter_class=_Formatter, epilog=EPILOG,
                description="Checked and visible shapes for PyTorch recurrent layers.")
    p.add_argument("--version", action="version", version=f"shapeviz {__version__}")
    # prog: the prefix argparse would otherwise format from the usage, the same "shapeviz"
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, prog="shapeviz")
    p.commands = sub.choices
    for name, (what, add) in _PARSERS.items():
        if name in named:
            add(sub, name, what)
        else:
            sub.add_parser(name, help=what, formatter_class=_Formatter, add_help=False)
    return p


# ====================================================================== commands
def _explain(args: argparse.Namespace) -> int:
    from shapeviz.apps.spec import parse_spec

    module = parse_spec(args.spec, device="meta")  # a bad spec is refused before torch is imported
    from shapeviz.render.text import explain

    print(explain(module, T=args.T, bs=args.bs, style=args.style))
    return EXIT_OK


def _check_size(module: nn.Module, T: int | None, max_steps: int | None) -> None:
    """Refuse a diagram over render's one cap (:data:`shapeviz.render.caps.MAX_CELLS`) before laying it out."""
    from shapeviz.core.model import conventions
    from shapeviz.render.caps import check_size
    from shapeviz.render.panels import Panel
    from shapeviz.render.unrolled import DEFAULT_MAX_STEPS

    try:
        check_size([Panel(conventions(module), T=T)], max_steps or DEFAULT_MAX_STEPS, what="draw")
    except ShapevizError as exc:  # the cap's SpecError, in the command line's words
        raise UsageError(str(exc).replace("max_steps=", "--max-steps ")) from None


def _draw(args: argparse.Namespace) -> int:
    from shapeviz.apps.spec import parse_spec

    out = writable_output(args.output, (".svg", ".png"), "draw -o")
    module = parse_spec(args.spec, device="meta")  # a bad spec is refused before torch is imported
    from shapeviz.render.unrolled import unroll

    _check_size(module, args.T, args.max_steps)
    path = unroll(module, T=args.T, bs=args.bs, max_steps=args.max_steps).render(out)
    print(f"wrote {path}")
    return EXIT_OK


def _load_factory(target: str) -> Any:
    """Import FILE.py and return FACTORY (a callable); usage errors for a bad target."""
    file, sep, name = target.rpartition(":")
    if not sep or not file or not name:
        raise UsageError(f"expected FILE.py:FACTORY (a Python file and the name of a function in it that "
                          f"returns the model), got {target!r}; e.g. model.py:build")
    path = Path(file)
    if path.suffix != ".py":
        raise UsageError(f"{file!r} is not a .py file; expected FILE.py:FACTORY, e.g. model.py:build")
    if not path.is_file():
        raise UsageError(f"no such file: {file!r} (from {target!r}); expected FILE.py:FACTORY, e.g. model.py:build")
    if not name.isidentifier():
        raise UsageError(f"{name!r} is not a Python name; expected FILE.py:FACTORY, e.g. model.py:build")
    import importlib.util
    import uuid

    mod_name = f"_shapeviz_user_{path.stem if path.stem.isidentifier() else 'file'}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(mod_name, path.resolve())
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
        raise UsageError(f"cannot import {file!r}")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # so the file can import its neighbours
    sys.modules[mod_name] = module  # dataclasses and pickle look their module up there
    try:
        with user_code(f"importing {file}"):
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[mod_name]
        raise
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    factory = getattr(module, name, None)
    if factory is None or not callable(factory):
        found = sorted(k for k, v in vars(module).items()
                       if callable(v) and not k.startswith("_") and getattr(v, "__module__", None) == mod_name)
        what = "no" if factory is None else "a non-callable"
        raise UsageError(f"{file} has {what} {name!r}; FACTORY must be a function or class defined in the file "
                          f"that returns the model. Callables defined there: {', '.join(found) or '(none)'}")
    return factory


def _make_model(target: str) -> tuple[nn.Module, str]:
    factory = _load_factory(target)
    name = target.rpartition(":")[2]
    with user_code(f"calling {name}()"):
        model = factory()
    import torch.nn as nn

    if not isinstance(model, nn.Module):
        raise UsageError(f"{name}() returned {type(model).__name__}, not a model; FACTORY must return an "
                          "nn.Module (e.g. `def build(): return MyModel()`)")
    return model, name


def _trace(args: argparse.Namespace) -> int:
    from shapeviz.apps.spec import make_input, parse_input
    from shapeviz.render.files import write_atomic

    sizes = parse_input(args.input)
    out = writable_output(args.output, (".json", ".txt", ".png", ".svg"), "trace -o") if args.output else None
    model, name = _make_model(args.target)
    from shapeviz.core.dimensions import dims
    from shapeviz.runtime.watching import checking
    from shapeviz.tracing.session import trace

    x, names, declared = make_input(model, sizes)
    with user_code(f"the forward pass of {name}()", (ShapevizError,)), dims(**declared), checking(inputs=names):
        tr = trace(model, x, ops=args.ops, inputs_dims=names)
    if out is None:
        print(tr.table())
        return EXIT_OK
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix == ".json":
        write_atomic(out, tr.to_json() + "\n")
    elif suffix == ".txt":
        write_atomic(out, tr.table() + "\n")
    else:
        import matplotlib

        matplotlib.use("Agg")
        import io

        import matplotlib.pyplot as plt

        fig = tr.plot()
        buf = io.BytesIO()
        fig.savefig(buf, format=suffix.lstrip(".") or "png")
        plt.close(fig)
        write_atomic(out, buf.getvalue())
    print(f"wrote {out}")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from shapeviz.apps.spec import make_input, parse_input

    sizes = parse_input(args.input)
    model, name = _make_model(args.target)
    from shapeviz.core.dimensions import dims
    from shapeviz.runtime.watching import checking

    if args.meta:
        return _check_meta(model, name, args.input)
    x, names, declared = make_input(model, sizes)
    import torch

    with (user_code(f"the forward pass of {name}()", (ShapevizError,)), dims(**declared), checking(inputs=names),
          torch.no_grad()):
        model(x)
    shape = ", ".join(f"{n}={s}" for n, s in zip(names.split(), x.shape))
    print(f"ok: {name}() ran on input ({shape}) {str(x.dtype).replace('torch.', '')} "
          f"under sv.checking(inputs={names!r}); no shape error")
    return EXIT_OK


def _check_meta(model: Any, name: str, inputs: str) -> int:
    """``check --meta``: a dry run on the meta device (no computation, no activation memory)."""
    from shapeviz.runtime.dryrun import dry_run

    with user_code(f"the dry run of {name}()", (ShapevizError,)):
        run = dry_run(model, inputs)
    if run.error is not None:
        raise run.error
    print(f"ok: {name}() dry-ran on meta input {run.input_text}; no shape error")
    return EXIT_OK


@contextlib.contextmanager
def _progress_bar(total: int, desc: str, quiet: bool) -> Iterator[Any]:
    """A tqdm bar on a terminal (none when quiet or not a TTY); yields the builders' progress callback."""
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="step", disable=True if quiet else None, file=sys.stderr,
              leave=False) as bar:
        def step(line: str) -> None:
            if line.startswith(("[", "page ", "explorer ")):
                bar.set_postfix_str(line.split(" ", 1)[-1][:40], refresh=False)
                bar.update(1)
            else:
                bar.write(line, file=sys.stderr)
        yield step


def _report(files: list[Path], outdir: str, limit: int = 40) -> None:
    """Print what was written: every file when few, else a count per folder."""
    if not files:
        print(f"{outdir}: nothing changed, no file written")
        return
    print(f"wrote {len(files)} files to {outdir}:")
    if len(files) <= limit:
        for f in files:
            print(f"  {f}")
        return
    counts: dict[Path, int] = {}
    for f in files:
        counts[f.parent] = counts.get(f.parent, 0) + 1
    for folder, n in counts.items():
        print(f"  {folder}/  {n} file{'s' if n != 1 else ''}")


def _gallery(args: argparse.Namespace) -> int:
    from shapeviz.gallery.builder import EXAMPLES, build

    with _progress_bar(len(EXAMPLES), "gallery", args.quiet) as step:
        files = build(args.outdir, progress=step)
    _report(files, args.outdir)
    return EXIT_OK


def _site(args: argparse.Namespace) -> int:
    from shapeviz.gallery.builder import EXAMPLES
    from shapeviz.gallery.site import build_site, configs

    with _progress_bar(len(EXAMPLES) + len(list(configs())), "site", args.quiet) as step:
        files = build_site(args.outdir, progress=step, force=args.force)
    _report(files, args.outdir)
    print(f"open {Path(args.outdir) / 'index.html'} (or serve the folder: python -m http.server -d {args.outdir})")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    import inspect
    import textwrap

    import torch
    import torch.nn as nn

    from shapeviz.core.dimensions import dims
    from shapeviz.gallery.models import CellOverDataset, EmbedRNN, ForgotTranspose, seeded
    from shapeviz.render.backend import Diagram
    from shapeviz.render.files import write_atomic
    from shapeviz.render.table import GUESS_LEGEND
    from shapeviz.render.unrolled import unroll
    from shapeviz.runtime.watching import checking
    from shapeviz.tracing.session import trace

    print("shapeviz demo\n\n1. The classic textbook RNN examples, each run once under sv.checking (every "
          "recurrent call\n   checked) and traced: the model's input -> its results, in named dims.\n")
    from shapeviz.gallery.registry import EXAMPLES, SEED_SYSTEMS

    guessed = False
    for name in SEED_SYSTEMS:
        ex = EXAMPLES[name]
        built = ex.build()
        with dims(**built.sizes), checking(inputs=built.inputs_dims):
            tr = trace(built.model, *built.inputs, inputs_dims=built.inputs_dims)
        row = tr.calls[0].describe()
        guessed = guessed or "?=" in row
        print(f"   {ex.title}\n     {row}   ok")
    if guessed:
        print(f"\n   {GUESS_LEGEND}")

    print("\n2. A mistake shapeviz catches: the Embedding's output not transposed.\n"
          "   shapeviz.gallery.models.ForgotTranspose is EmbedRNN with this forward:\n")
    src = textwrap.dedent(inspect.getsource(ForgotTranspose.forward))
    print(textwrap.indent(src.rstrip(), "     "))
    print('\n   tokens = torch.randint(0, 28, (2, 5))       # (bs=2, T=5)\n'
          '   with sv.checking(inputs="bs T"):\n       ForgotTranspose()(tokens)\n\n   raises:\n')
    tokens = torch.randint(0, 28, (2, 5), generator=seeded(1))
    try:
        with checking(inputs="bs T"):
            ForgotTranspose()(tokens)
    except ShapeError as err:
        print(textwrap.indent(str(err), "     "))
    else:  # pragma: no cover - the check is the point of the demo
        raise AssertionError("the demo's mistake was not caught")

    out = Path(args.outdir)
    print(f"\n3. Unrolled diagrams, written to {out}/:\n")
    with dims(vocab=28):
        embed = trace(EmbedRNN(), tokens, inputs_dims="bs T").unroll()
    cells = trace(CellOverDataset(), torch.randn(3, 1, 4, generator=seeded(1)), inputs_dims="T bs emb").unroll()
    diagrams: list[tuple[str, Diagram]] = [
        ("embed_rnn", embed),
        ("rnncell_loop", cells),
        ("lstm_2layer_bidirectional", unroll(nn.LSTM(10, 20, num_layers=2, bidirectional=True, device="meta"),
                                             T=5, bs=3)),
    ]
    out.mkdir(parents=True, exist_ok=True)
    missing = None
    for stem, diagram in diagrams:
        try:
            paths = [diagram.render(out / f"{stem}.{fmt}") for fmt in ("svg", "png")]
        except MissingBackendError as exc:
            missing = exc
            paths = [out / f"{stem}.dot"]
            write_atomic(paths[0], diagram.source)
        print("   " + ", ".join(str(p) for p in paths))
    if missing is not None:
        print(f"\n   (wrote DOT text: {missing})")
    print("\nNext: shapeviz explain \"LSTM(10, 20, num_layers=2, bidirectional=True)\" --T 5 --bs 3\n"
          "      shapeviz check gallery/models/char_rnn.py:build --input \"bs=2,T=5,vocab=28\"   (a model file)\n"
          "      shapeviz gallery                                     (every example, with code)")
    return EXIT_OK


_COMMANDS = {"explain": _explain, "draw": _draw, "trace": _trace, "check": _check,
             "gallery": _gallery, "site": _site, "demo": _demo}


@contextlib.contextmanager
def _no_warnings() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        yield


def _unrecognized(parser: _Parser, command: str | None, argv: list[str], extras: list[str]) -> NoReturn:
    """Refuse what no parser took, with the usage of the command it was given to and a suggestion."""
    target: argparse.ArgumentParser = parser
    if command is not None and command in argv and argv.index(command) < argv.index(extras[0]):
        target = parser.commands[command]
    from shapeviz.apps.spec import did_you_mean

    options = [o for a in target._actions for o in a.option_strings]
    guesses = [g for e in extras if e.startswith("-") and (g := did_you_mean(e.split("=", 1)[0], options))]
    hint = f" (did you mean {' or '.join(dict.fromkeys(guesses))}?)" if guesses else ""
    target.error(f"unrecognized arguments: {' '.join(extras)}{hint}")


def _run(argv: list[str]) -> int:
    parser = build_parser(argv)
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            _unrecognized(parser, args.command, argv, extras)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        with _no_warnings(), sigterm_unwinds():
            code = _COMMANDS[args.command](args)
            sys.stdout.flush()  # a closed pipe fails here, inside the command, not at exit
            return code
    except BaseException as exc:  # every failure becomes its documented exit code and one line
        return exit_code(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 shape error, 2 usage, 3 your code, 4 backend, 5 bug).

    >>> main(["draw", "LSTM(10, 20)", "-o", "lstm.pdf"])   # the message goes to stderr
    2

    Output degrades to what stdout and stderr can encode (``→`` becomes ``->``); a closed stdout
    pipe (``| head -1``) ends the command quietly with :data:`EXIT_BROKEN_PIPE`.
    """
    with encodable_output():
        try:
            code = _run(list(sys.argv[1:] if argv is None else argv))
            sys.stdout.flush()  # help text into a closed pipe
        except OSError as exc:
            code = exit_code(exc)
    return code
