"""The exceptions shapeviz raises.

>>> err = ShapeError(module="rnn: RNN(10, 20)", argument="input", expected="(T, bs, emb=10)",
...                  actual=(5, 3, 8), code="input_size", hints=["x = proj(x)  # -> emb=10"])
>>> err.code, isinstance(err, ValueError)
('input_size', True)

* :class:`ShapeError` -- your *data* does not fit the layer (a ``ValueError``).
* :class:`SpecError` -- your *spec*, option or annotation is malformed (also a ``ValueError``).
* :class:`DryRunError` -- a dry run reached code that needs tensor values (``.item()``, ``if t:``).
* :class:`MissingBackendError` -- no Graphviz ``dot`` program could be found to render with.
"""

from __future__ import annotations

from collections.abc import Sequence

CODES: tuple[str, ...] = (
    "input_size",
    "input_ndim",
    "batch_first_swap",
    "hidden_layers",
    "hidden_ndim",
    "hidden_batch_first",
    "hidden_size",
    "proj_size",
    "batch_mismatch",
    "state_type",
    "dtype",
    "device",
    "unbatched_ambiguous",
    "packed",
    "annotation",
    "scrambled_view",
    "flatten_order",
)
"""The stable error codes. Never rename one: tests and users match on them.

The first 14 are the recurrent-layer mistakes of DESIGN.md; ``annotation`` is a value that does
not fit its annotation under ``@sv.check`` (when no more specific code applies): a jaxtyping array,
or any other hint (``n: int``, ``mode: Literal[...]``), checked with beartype's rules;
``scrambled_view`` and ``flatten_order`` are the flow checks of ``ops=True``."""


def format_shape(shape: Sequence[object]) -> str:
    """The one tuple formatter: ``(5, 2, 10)`` -> ``"(5, 2, 10)"``; a 1-tuple keeps its comma.

    >>> format_shape((5, 2, 10)), format_shape((4,)), format_shape(("T", "bs"))
    ('(5, 2, 10)', '(4,)', '(T, bs)')
    """
    inner = ", ".join(str(s) for s in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


class ShapevizError(Exception):
    """Base class of every error shapeviz raises on purpose."""


class ShapeError(ShapevizError, ValueError):
    """A tensor's shape, dtype or device does not fit the recurrent layer it is given to.

    The message is built from the structured fields, so code can match on ``err.code``
    and people can read ``str(err)``.
    """

    def __init__(
        self,
        *,
        module: str,
        argument: str,
        expected: str,
        actual: tuple[int, ...] | str | None,
        code: str,
        hints: Sequence[str] = (),
        detail: str = "",
        context: Sequence[str] = (),
    ) -> None:
        if code not in CODES:
            raise ValueError(f"unknown ShapeError code {code!r}; valid codes: {', '.join(CODES)}")
        self.module = module
        self.argument = argument
        self.expected = expected
        self.actual = actual
        self.code = code
        self.hints = list(hints)
        self.detail = detail
        self.context = list(context)
        super().__init__(self._message())

    def _message(self) -> str:
        actual = format_shape(self.actual) if isinstance(self.actual, tuple) else self.actual
        lines = [f"[{self.code}] {self.module}: argument `{self.argument}`"]
        if self.detail:
            lines.append(f"  {self.detail}")
        lines.append(f"  expected: {self.expected}")
        lines.append(f"  actual:   {actual}")
        lines.extend(f"  {c}" for c in self.context)
        lines.extend(f"hint: {h}" for h in self.hints)
        return "\n".join(lines)

    def add_context(self, line: str | None = None, *, path: str | None = None) -> None:
        """Add context found at an outer boundary and rebuild the message.

        ``line`` is appended as a context line (e.g. the rank); ``path`` (the module's path inside a
        model, found by the caller) prefixes :attr:`module`: ``"rnn: RNN(20, 32)"``.

        >>> err = ShapeError(module="RNN(2, 3)", argument="input", expected="(T, bs, emb=2)",
        ...                  actual=(5, 3, 8), code="input_size")
        >>> err.add_context(path="encoder.rnn")
        >>> str(err).splitlines()[0]
        '[input_size] encoder.rnn: RNN(2, 3): argument `input`'
        """
        if path:
            self.module = f"{path}: {self.module}"
        if line is not None:
            self.context.append(line)
        self.args = (self._message(),)

    def _repr_html_(self) -> str:
        """Notebooks: expected vs actual side by side, the disagreeing dims highlighted, hints as code."""
        from shapeviz._views import show

        return show("ShapeError.html", self, getattr(self, "__notes__", ()))

    def __reduce__(self):  # picklable across processes (DDP, multiprocessing)
        return (_rebuild_shape_error, (self.__dict__.copy(),))


def _rebuild_shape_error(state: dict) -> ShapeError:
    return ShapeError(**{k: state[k] for k in (
        "module", "argument", "expected", "actual", "code", "hints", "detail", "context")})


WARNING_CODES: tuple[str, ...] = ("bidirectional_last", "padded_last", "bidirectional_h_n")
"""The stable codes of :class:`ShapeWarning` (``ops=True`` flow checks)."""


class ShapeWarning(UserWarning):
    """A shape that runs but very likely computes the wrong thing (``ops=True``); ``.code`` says which.

    >>> w = ShapeWarning("bidirectional_h_n", "h_n[-1] is one direction; use torch.cat((h_n[-2], h_n[-1]), dim=1)")
    >>> w.code, str(w).split("]")[0]
    ('bidirectional_h_n', '[bidirectional_h_n')
    """

    def __init__(self, code: str, message: str) -> None:
        if code not in WARNING_CODES:
            raise ValueError(f"unknown ShapeWarning code {code!r}; valid codes: {', '.join(WARNING_CODES)}")
        self.code = code
        super().__init__(f"[{code}] {message}")


class SpecError(ShapevizError, ValueError):
    """A spec, option or annotation given to shapeviz is malformed (not the user's data)."""


class DryRunError(ShapevizError, RuntimeError):
    """A dry run reached an operation that needs tensor values, which ``meta`` tensors do not have.

    ``operation`` (``"Tensor.item()"``), ``reason``, ``source`` (``"file.py:42"``), ``function``
    (``"in decode"``) and ``line`` (the code) say where; ``trace`` holds the calls traced up to it.
    """

    def __init__(self, *, operation: str, reason: str, source: str, function: str = "", line: str = "") -> None:
        self.operation = operation
        self.reason = reason
        self.source = source
        self.function = function
        self.line = line
        self.trace: object = None  # a shapeviz.Trace of the run up to here, once the dry run has it
        super().__init__(self._message())

    def _message(self) -> str:
        where = " ".join(p for p in (self.source, self.function) if p)
        lines = [f"the dry run stopped at {where}" + (f": {self.line}" if self.line else ""),
                 f"  {self.operation} {self.reason}; a dry run has shapes and dtypes only (every tensor is on "
                 "`meta`, with no values), so it cannot go past this line"]
        modules = getattr(self.trace, "modules", None)
        if modules is not None:
            n = len(modules())
            lines.append(f"  traced up to here: {n} module call{'s' if n != 1 else ''} (err.trace)")
        lines.append("hint: dry-run the part before this line, or trace the whole forward with small real "
                     "inputs: sv.trace(model, x)")
        return "\n".join(lines)

    def keep(self, trace: object) -> None:
        """Attach the trace of the run up to the stop, and say so in the message."""
        self.trace = trace
        self.args = (self._message(),)

    def __reduce__(self):  # picklable across processes, like ShapeError (the trace stays behind)
        return (_rebuild_dry_run_error, (self.operation, self.reason, self.source, self.function, self.line))


def _rebuild_dry_run_error(operation: str, reason: str, source: str, function: str, line: str) -> DryRunError:
    return DryRunError(operation=operation, reason=reason, source=source, function=function, line=line)


class MissingBackendError(ShapevizError, RuntimeError):
    """No Graphviz layout program (system ``dot`` or ``graphviz-pure``) could be found."""


for _cls in (ShapevizError, ShapeError, ShapeWarning, SpecError, DryRunError, MissingBackendError):
    _cls.__module__ = "shapeviz"  # tracebacks read `shapeviz.ShapeError`, the public name
