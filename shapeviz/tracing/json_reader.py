"""Reading a trace's JSON, which may come from anywhere: schema, types and sizes are checked, and
anything wrong raises one :class:`~shapeviz.SpecError` that says what and where.

>>> read_trace('{"schema": "shapeviz.trace/1", "sizes": {"T": [5]}, "calls": []}').sizes
{'T': [5]}
>>> read_trace('{"schema": "shapeviz.trace/1", "sizes": {"T": [-5]}, "calls": []}')
Traceback (most recent call last):
...
shapeviz.SpecError: Trace.from_json: sizes['T']: expected a list of non-negative ints, got [-5]

Counts and sizes are capped, so a small crafted file cannot make a huge diagram or table: a
module's ``num_layers`` and sizes as :mod:`shapeviz.apps.spec` caps them, and the constants below.
Unknown keys are ignored (except in ``conventions``, which lists exactly a module's configuration).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from shapeviz._errors import SpecError
from shapeviz.core.limits import MAX_LAYERS, MAX_SIZE
from shapeviz.core.model import FAMILIES, Conventions
from shapeviz.tracing.records import SCHEMA, SCHEMA_1, Call, CallKind, TensorInfo, Trace
from shapeviz.tracing.runs import Calls

__all__ = ["MAX_CALLS", "MAX_DEPTH", "MAX_DIMS", "MAX_FLOW", "MAX_TENSORS", "read_trace"]

MAX_CALLS = 1_000_000
"""Most calls a trace read from JSON may hold (repeated steps counted one by one)."""
MAX_TENSORS = 10_000
"""Most tensor records in one call's inputs or outputs, and sizes under one name."""
MAX_DIMS = 64
"""Most dims of one tensor record."""
MAX_DEPTH = 1_000
"""Deepest module nesting of a call (its ``depth``: tables indent by it)."""
MAX_FLOW = 8
"""Most ``flow`` entries (recurrent calls a tensor was computed from) of one tensor record."""

_MAX_INT = 2 ** 63 - 1  # torch sizes are int64
_WHO = "Trace.from_json: "
_REQUIRED: Any = object()
_PACKED = ("", "data", "batch_sizes")
_CONVENTION_KEYS = ("family", "cell", "input_size", "hidden_size", "num_layers", "bidirectional",
                    "batch_first", "proj_size", "label")


def read_trace(text: str | bytes | bytearray) -> Trace:
    """The :class:`~shapeviz.tracing.records.Trace` in ``text``, or a :class:`~shapeviz.SpecError`."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise SpecError(f"{_WHO}expected JSON text (str or bytes), got {type(text).__name__}")
    try:
        doc = json.loads(text)
    except RecursionError:
        raise SpecError(f"{_WHO}the JSON is nested too deeply (a trace nests 6 levels)") from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, an int literal of thousands of digits
        raise SpecError(f"{_WHO}not valid JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict) or doc.get("schema") not in (SCHEMA, SCHEMA_1):
        got = _show(doc.get("schema")) if isinstance(doc, dict) else type(doc).__name__
        raise SpecError(f"not a shapeviz trace: expected schema {SCHEMA!r} (or the older {SCHEMA_1!r}), got {got}")
    listed = _list(doc, "calls", "", MAX_CALLS, "calls")
    sizes = _object(_field(doc, "sizes", ""), "sizes")
    read = [_call(c, f"calls[{i}]") for i, c in enumerate(listed)]
    calls: Sequence[Call] = read
    positions: Iterable[int] = range(len(read))
    if doc["schema"] == SCHEMA:
        calls, positions = _with_runs(read, _list(doc, "runs", "", MAX_CALLS, "runs", []))
    _check_links(calls, positions)
    return Trace(calls=calls, model=_str(doc, "model", ""), ops=_bool(doc, "ops", ""),
                 sizes={k: list(_ints(v, f"sizes[{_show(k)}]", MAX_TENSORS, "sizes")) for k, v in sizes.items()},
                 error=_str(doc, "error", ""))


def _with_runs(read: list[Call], runs: list[Any]) -> tuple[Calls, list[int]]:
    """The calls of a ``"shapeviz.trace/2"`` file: ``read`` lists each call not repeated and the first step of each
    run; the positions of the calls :func:`_check_links` reads (of each run its first, second and last step: the
    others have what the second has, moved).

    >>> c = [Call(0, "", "M", "module"), Call(1, "cell", "GRUCell", "module", parent=0)]
    >>> calls, _ = _with_runs(c, [[1, 1, 3]])
    >>> len(calls), calls[3].index
    (4, 3)
    >>> _with_runs(c, [[1, 1, 3], [3, 1, 2]])
    Traceback (most recent call last):
    ...
    shapeviz.SpecError: Trace.from_json: runs[1]: expected a run that starts at a listed call after the one \
before (4 or later), got [3, 1, 2]
    """
    items: list[Call | tuple[tuple[Call, ...], int]] = []
    positions: list[int] = []
    at = pos = k = 0  # the next call's index in the whole trace, its place in the list, the next run
    while pos < len(read) or k < len(runs):
        run = _run(runs, k, at, len(read) - pos)
        if run is not None:
            length, count = run
            for j in range(length):
                _index(read[pos + j], pos + j, at + j)
            items.append((tuple(read[pos:pos + length]), count))
            positions += [at + j + step * length for step in sorted({0, 1, count - 1}) for j in range(length)]
            at, pos, k = at + length * count, pos + length, k + 1
        else:
            if pos >= len(read):
                _fail(f"runs[{k}]", f"a run that starts at a listed call (the calls run from 0 to {at - 1})",
                      runs[k])
            _index(read[pos], pos, at)
            items.append(read[pos])
            positions.append(at)
            at, pos = at + 1, pos + 1
        if at > MAX_CALLS:
            raise SpecError(f"{_WHO}runs: at most {MAX_CALLS:,} calls in all, got more")
    return Calls.stored(items), positions


def _run(runs: list[Any], k: int, at: int, left: int) -> tuple[int, int] | None:
    """(length, count) of run ``k`` if it starts at call ``at`` (``left`` calls listed from there on), else None."""
    if k >= len(runs):
        return None
    run = runs[k]
    if not (isinstance(run, list) and len(run) == 3 and all(type(v) is int for v in run)):
        _fail(f"runs[{k}]", "[start, length, count] (ints)", run)
    start, length, count = run
    if start > at:
        return None
    if start < at:
        _fail(f"runs[{k}]", f"a run that starts at a listed call after the one before ({at} or later)", run)
    if not left:
        _fail(f"runs[{k}]", f"a run that starts at a listed call (the calls run from 0 to {at - 1})", run)
    if not (1 <= length <= left and 2 <= count <= MAX_CALLS):
        _fail(f"runs[{k}]", f"a length from 1 to the calls listed from {at} on ({left}) and a count from 2 to "
              f"{MAX_CALLS:,}", run)
    return length, count


def _index(call: Call, pos: int, expected: int) -> None:
    if call.index != expected:
        raise SpecError(f"{_WHO}calls[{pos}].index: expected {expected} (calls are listed in order, each run of "
                        f"repeated steps once), got {call.index}")


# ---------------------------------------------------------------------- what makes calls a trace
def _check_links(calls: Sequence[Call], positions: Iterable[int]) -> None:
    """What the recorder guarantees of the calls' references to each other, so that nothing that walks
    them (enclosing calls, data flow) can loop or reach a call that is not there.

    * ``calls[i].index == i`` (calls are listed in the order they started);
    * a ``parent`` is an earlier module call (a call starts inside one that started before it: no cycles),
      and ``depth`` is one more than the parent's (0 without one);
    * ``produced_by``, ``flow`` and ``tokens`` name calls of this trace.

    Checked at ``positions`` (every call of a file that lists them all).

    >>> from shapeviz.tracing.records import Call
    >>> _check_links([Call(0, "", "M", "module", parent=1), Call(1, "rnn", "GRU", "module", parent=0)], [0, 1])
    Traceback (most recent call last):
    ...
    shapeviz.SpecError: Trace.from_json: calls[0].parent: expected the index of an earlier module call (0 has \
none), got 1
    """
    n = len(calls)
    for i in positions:
        c = calls[i]
        where = f"calls[{i}]"
        if c.index != i:
            raise SpecError(f"{_WHO}{where}.index: expected {i} (calls are listed in order), got {c.index}")
        if c.parent is not None and not (c.parent < i and calls[c.parent].kind is CallKind.MODULE):
            raise SpecError(f"{_WHO}{where}.parent: expected the index of an earlier module call "
                            f"({'0 to ' + str(i - 1) if i else '0 has none'}), got {c.parent}")
        depth = 0 if c.parent is None else calls[c.parent].depth + 1
        if c.depth != depth:  # so that a chain of enclosing calls is never longer than MAX_DEPTH
            raise SpecError(f"{_WHO}{where}.depth: expected {depth} (" + ("no enclosing call)" if c.parent is None
                            else f"one more than its parent, calls[{c.parent}])") + f", got {c.depth}")
        for side in ("inputs", "outputs"):
            for k, info in enumerate(getattr(c, side)):
                at = f"{where}.{side}[{k}]"
                if info.produced_by is not None and info.produced_by >= n:
                    raise SpecError(f"{_WHO}{at}.produced_by: expected a call index below {n}, got {info.produced_by}")
                bad = next((f for f in info.flow if f[0] >= n), None)
                if bad is not None:
                    raise SpecError(f"{_WHO}{at}.flow: expected call indices below {n}, got {list(bad)}")
                bad_token = next((t for t in info.tokens or () if t >= n), None)
                if bad_token is not None:
                    raise SpecError(f"{_WHO}{at}.tokens: expected call indices below {n}, got {bad_token}")


# ---------------------------------------------------------------------- records
def _call(value: Any, where: str) -> Call:
    d = _object(value, where)
    index = _int(d, "index", where, 0, MAX_CALLS - 1)
    path, type_ = _str(d, "path", where, _REQUIRED), _str(d, "type", where, _REQUIRED)
    kind = _field(d, "kind", where)
    if not (isinstance(kind, str) and kind in ("module", "op")):
        _fail(_at(where, "kind"), "'module' or 'op'", kind)
    return Call(index=index, path=path, type=type_, kind=CallKind(kind),
                inputs=_tensors(d, "inputs", where), outputs=_tensors(d, "outputs", where),
                conventions=_conventions(d.get("conventions"), _at(where, "conventions")),
                depth=_int(d, "depth", where, 0, MAX_DEPTH, 0),
                parent=_int(d, "parent", where, 0, MAX_CALLS - 1, None, nullable=True),
                source=_str(d, "source", where), code=_str(d, "code", where), params=_str(d, "params", where),
                error=_str(d, "error", where), site=_str(d, "site", where), flag=_str(d, "flag", where))


def _tensors(d: dict[str, Any], key: str, where: str) -> list[TensorInfo]:
    at = _at(where, key)
    return [_tensor(v, f"{at}[{i}]") for i, v in enumerate(_list(d, key, where, MAX_TENSORS, "tensors", []))]


def _tensor(value: Any, where: str) -> TensorInfo:
    d = _object(value, where)
    shape = _ints(_field(d, "shape", where), _at(where, "shape"), MAX_DIMS, "dims")
    names = d.get("names")
    if names is not None:
        at = _at(where, "names")
        if not isinstance(names, list):
            _fail(at, "null or a list of strings", names)
        if len(names) != len(shape):
            raise SpecError(f"{_WHO}{at}: expected {len(shape)} names (one per dim), got {len(names)}")
        for i, n in enumerate(names):
            if not isinstance(n, str):
                _fail(f"{at}[{i}]", "a string", n)
        names = tuple(names)
    origins = d.get("origins")
    if origins is not None:
        at = _at(where, "origins")
        if not (isinstance(origins, list) and len(origins) == len(shape) and all(isinstance(o, str) for o in origins)):
            _fail(at, f"null or a list of {len(shape)} strings (one per dim)", origins)
        if names is None and any(origins):
            raise SpecError(f"{_WHO}{at}: origins given for a record without names")
        origins = tuple(origins)
    packed = _str(d, "packed", where)
    if packed not in _PACKED:
        _fail(_at(where, "packed"), "one of " + ", ".join(map(repr, _PACKED)), packed)
    return TensorInfo(shape=shape, names=names, role=_str(d, "role", where), key=_str(d, "key", where),
                      label=_str(d, "label", where), dtype=_str(d, "dtype", where, "float32"),
                      device=_str(d, "device", where, "cpu"), ambiguous=_bool(d, "ambiguous", where),
                      packed=packed, repeat=_int(d, "repeat", where, 1, _MAX_INT, 1),
                      produced_by=_int(d, "produced_by", where, 0, MAX_CALLS - 1, None, nullable=True),
                      flow=_pairs(d, "flow", where, MAX_CALLS - 1, MAX_FLOW),
                      tokens=_tokens(d.get("tokens"), _at(where, "tokens")),
                      batch_sizes=_runs(d, where), origins=origins,
                      step=_step(d.get("step"), _at(where, "step")), opaque=_str(d, "opaque", where))


def _tokens(value: Any, at: str) -> tuple[int, ...] | None:
    """``null`` or ``[int, ...]``: the calls whose results reached a record through a token (at most ``MAX_FLOW``)."""
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) <= MAX_FLOW
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < MAX_CALLS for v in value)):
        _fail(at, f"null or a list of at most {MAX_FLOW} call indices", value)
    return tuple(value)


def _step(value: Any, at: str) -> tuple[str, int] | None:
    """``null`` or ``[name, size]``: the named dim a record is one step of."""
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool) and 0 <= value[1] <= _MAX_INT):
        _fail(at, "null or [name, size]", value)
    return (value[0], value[1])


def _pairs(d: dict[str, Any], key: str, where: str, hi: int, cap: int) -> tuple[tuple[int, int], ...]:
    """``[[int, int], ...]`` (``flow``: call and output indices; ``batch_sizes``: runs), at most ``cap``."""
    at = _at(where, key)
    value = _list(d, key, where, cap, "pairs", [])
    out = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2
                and all(type(v) is int and 0 <= v <= hi for v in pair)):
            _fail(f"{at}[{i}]", f"a pair of ints from 0 to {hi:,}", pair)
        out.append((pair[0], pair[1]))
    return tuple(out)


def _runs(d: dict[str, Any], where: str) -> tuple[tuple[int, int], ...]:
    """A PackedSequence's ``batch_sizes`` as ``[[batch size, steps], ...]`` runs: sizes from ``MAX_SIZE`` down
    to 1, each smaller than the one before (a sequence never rejoins the batch), steps at least 1.

    >>> _runs({"batch_sizes": [[3, 2], [1, 4]]}, "x")
    ((3, 2), (1, 4))
    >>> _runs({"batch_sizes": [[1, 1], [2, 1]]}, "x")
    Traceback (most recent call last):
    ...
    shapeviz.SpecError: Trace.from_json: x.batch_sizes[1]: expected a batch size below the one before (1), got [2, 1]
    """
    runs = _pairs(d, "batch_sizes", where, _MAX_INT, MAX_TENSORS)
    at = _at(where, "batch_sizes")
    for i, (size, steps) in enumerate(runs):
        if not (1 <= size <= MAX_SIZE and steps >= 1):
            _fail(f"{at}[{i}]", f"[batch size from 1 to {MAX_SIZE:,}, steps >= 1]", [size, steps])
        if i and size >= runs[i - 1][0]:
            _fail(f"{at}[{i}]", f"a batch size below the one before ({runs[i - 1][0]})", [size, steps])
    return runs


def _conventions(value: Any, where: str) -> Conventions | None:
    if value is None:
        return None
    d = _object(value, where)
    extra = [k for k in d if k not in _CONVENTION_KEYS]
    if extra:
        raise SpecError(f"{_WHO}{where}: unexpected key {_show(extra[0])}; valid: {', '.join(_CONVENTION_KEYS)}")
    family = _field(d, "family", where)
    if not (isinstance(family, str) and family in FAMILIES):
        _fail(_at(where, "family"), "one of " + ", ".join(map(repr, FAMILIES)), family)
    try:
        return Conventions(family=family, cell=_bool(d, "cell", where, _REQUIRED),
                           input_size=_int(d, "input_size", where, 1, MAX_SIZE),
                           hidden_size=_int(d, "hidden_size", where, 1, MAX_SIZE),
                           num_layers=_int(d, "num_layers", where, 1, MAX_LAYERS, 1),
                           bidirectional=_bool(d, "bidirectional", where),
                           batch_first=_bool(d, "batch_first", where),
                           proj_size=_int(d, "proj_size", where, 0, MAX_SIZE, 0), label=_str(d, "label", where))
    except SpecError as exc:
        if str(exc).startswith(_WHO):
            raise
        raise SpecError(f"{_WHO}{where}: {exc}") from None


# ---------------------------------------------------------------------- typed fields
def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _fail(where: str, what: str, got: Any) -> None:
    raise SpecError(f"{_WHO}{where}: expected {what}, got {_show(got)}")


def _field(d: dict[str, Any], key: str, where: str, default: Any = _REQUIRED) -> Any:
    if key in d:
        return d[key]
    if default is _REQUIRED:
        raise SpecError(f"{_WHO}{_at(where, key)}: missing")
    return default


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(where, "an object", value)
    return value


def _list(d: dict[str, Any], key: str, where: str, cap: int, noun: str, default: Any = _REQUIRED) -> list[Any]:
    value = _field(d, key, where, default)
    at = _at(where, key)
    if not isinstance(value, list):
        _fail(at, "a list", value)
    if len(value) > cap:
        raise SpecError(f"{_WHO}{at}: at most {cap:,} {noun}, got {len(value):,}")
    return value


def _str(d: dict[str, Any], key: str, where: str, default: Any = "") -> str:
    value = _field(d, key, where, default)
    if not isinstance(value, str):
        _fail(_at(where, key), "a string", value)
    return value


def _bool(d: dict[str, Any], key: str, where: str, default: Any = False) -> bool:
    value = _field(d, key, where, default)
    if type(value) is not bool:
        _fail(_at(where, key), "true or false", value)
    return value


def _int(d: dict[str, Any], key: str, where: str, lo: int, hi: int, default: Any = _REQUIRED, *,
         nullable: bool = False) -> Any:
    value = _field(d, key, where, default)
    if value is None and nullable:
        return None
    if type(value) is not int or not lo <= value <= hi:
        _fail(_at(where, key), ("null or " if nullable else "") + f"an int from {lo:,} to {hi:,}", value)
    return value


def _ints(value: Any, where: str, cap: int, noun: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(s) is int and 0 <= s <= _MAX_INT for s in value):
        _fail(where, "a list of non-negative ints", value)
    if len(value) > cap:
        raise SpecError(f"{_WHO}{where}: at most {cap:,} {noun}, got {len(value):,}")
    return tuple(value)


def _show(value: Any, depth: int = 0) -> str:
    """A short, safe rendering of any JSON value for a message (no deep recursion, no huge text)."""
    if isinstance(value, str):
        text = repr(value[:40]) + ("…" if len(value) > 40 else "")
    elif isinstance(value, list):
        inner = "…" if depth >= 2 else ", ".join(_show(v, depth + 1) for v in value[:4])
        text = "[" + inner + (", …" if len(value) > 4 and depth < 2 else "") + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(_show(k, 2) + ": …" for k in list(value)[:3]) + (", …" if len(value) > 3 else "") + "}"
    else:
        text = json.dumps(value) if not isinstance(value, int) or type(value) is bool else str(value)
    return text if len(text) <= 80 else text[:79] + "…"
