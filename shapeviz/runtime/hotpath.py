"""The hot path of a check: a repeat of the last call that fit, accepted after plain reads made in line.

>>> import torch, torch.nn as nn
>>> from shapeviz.runtime.fastcheck import check_input, plan_for
>>> lstm = nn.LSTM(4, 6)
>>> check_input(lstm, torch.randn(5, 2, 4), None, None)  # (T=5, bs=2, emb=4): fits, the memo is set
True
>>> plan_for(lstm).hot(lstm, torch.randn(5, 2, 4), None), plan_for(lstm).hot(lstm, torch.randn(5, 2, 3), None)
(True, False)

:class:`~shapeviz.runtime.fastcheck.CallPlan` keeps the memo of the shape rule (the input shape, declared sizes
and the state shapes they give); this module writes, once per state arity and set of setting names, the code that
compares a call with that memo (:func:`hot_path`). False never means a mistake: it sends the call the long way.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from shapeviz.core.dimensions import DECLARED
from shapeviz.runtime.switches import ENV_DATA, ENV_KEY, dynamo_compiling
from shapeviz.runtime.tensorguard import guard_of, guards_work

if TYPE_CHECKING:
    from shapeviz.runtime.fastcheck import CallPlan

__all__ = ["checker_code", "declared_hot", "flat_memo", "hot_path", "no_memo", "same_objects", "state_form"]


def same_objects(a: tuple | None, b: tuple | None) -> bool:
    """The same objects, one by one (what the hot path compares settings by)."""
    return a is not None and b is not None and len(a) == len(b) and all(x is y for x, y in zip(a, b))


def no_memo(m: torch.nn.Module, x: Any, hx: Any) -> bool:
    """The hot path of a plan no call has fit yet: every call goes the long way."""
    return False


# the check of a repeat call, once for both kinds of code made from it: ``FAIL`` sends the call the long way,
# ``OK`` accepts it (a plan's hot path returns False or True; a checker breaks out to its slow path or returns)
_BODY = """\
if env_key in env or type(x) is not tensor or dynamo():
    FAIL
d = m.__dict__
try:
    if {config} or {decl}:
        FAIL
    w = {weight}
{guarded}
    if x.shape != sh:
        FAIL
    dtype = x.dtype
    if x.is_cpu:
        if hx is None:
            if w.dtype is dtype and w.is_cpu:
                OKX
            FAIL
{cpu}
    device = x.device
    if w.dtype is not dtype or device != w.device:
        FAIL
    if hx is None:
        OKX
{other}
except (KeyError, AttributeError, ValueError, RuntimeError):  # a setting or the weight deleted since, a state
    pass  # of another arity, a tensor with no sizes to read (nested): the long way says what is wrong
FAIL
"""
# with torch's guard (:mod:`shapeviz.runtime.tensorguard`): the memo's ``g`` holds the guard of each way of
# calling (no state, a state) made from the first call the reads below accepted; a guard's True skips them all
_GUARDED = {
    "one": """\
    if hx is None:
        if (gx := g[0]) is not None and gx(x, w):
            OK
    elif (gs := g[1]) is not None and gs(x, w, hx):
        OK""",
    "tuple1": """\
    if hx is None:
        if (gx := g[0]) is not None and gx(x, w):
            OK
    elif (gs := g[1]) is not None and type(hx) is tuple:
        (h,) = hx
        if gs(x, w, h):
            OK""",
    "two": """\
    if hx is None:
        if (gx := g[0]) is not None and gx(x, w):
            OK
    elif (gs := g[1]) is not None and type(hx) is tuple:
        h, c = hx
        if gs(x, w, h, c):
            OK""",
    "many": """\
    if hx is None:
        if (gx := g[0]) is not None and gx(x, w):
            OK
    elif (gs := g[1]) is not None and type(hx) is tuple and len(hx) == len(wants) and gs(x, w, *hx):
        OK""",
}
# what a call the reads accepted leaves behind: the guard of its way of calling, where none was made yet
_LEARN = {"x": "if g[0] is None:\n    g[0] = guard(x, w)",
          "one": "if g[1] is None:\n    g[1] = guard(x, w, hx)",
          "tuple1": "if g[1] is None:\n    g[1] = guard(x, w, h)",
          "two": "if g[1] is None:\n    g[1] = guard(x, w, h, c)",
          "many": "if g[1] is None:\n    g[1] = guard(x, w, *hx)"}
# a plan's hot path: the memo's values bound once; a checker: the memo read whole on each call (one tuple,
# replaced whole after a call that went the long way, so a thread never pairs one call's shape with another's
# states)
_HEAD = {
    "hot": """\
def make(memo, m, refresh, getkey, wname, sub, walk, env, env_key, decl_now, tensor, dynamo, guard):
    {unpack} = memo
    def hot(m, x, hx):
{body}
    return hot
""",
    "checker": """\
def make(memo, m, refresh, getkey, wname, sub, walk, env, env_key, decl_now, tensor, dynamo, guard):
    def check(input, hx=None):
        nonlocal memo
        x = input
        {unpack} = memo
        while True:
{body}
        new = refresh(m, x, hx)
        if new is not None:
            memo = new
    return check
""",
}
_EXITS = {"hot": ("return False", "return True"), "checker": ("break", "return")}
# where the weight whose dtype and device are the module's sits: torch's own, one module down, or deeper
_WEIGHT = {"own": 'd["_parameters"][wname]', "sub": 'd["_modules"][sub]._parameters[wname]',
           "walk": 'walk(d["_modules"][sub])._parameters[wname]'}
# the state, by its form: one tensor, a 1-tuple, an LSTM's (h, c), a tuple of more; on the CPU, then elsewhere
_CPU = {
    "one": """\
        if (type(hx) is tensor and hx.shape == want_h and w.dtype is dtype and hx.dtype is dtype and w.is_cpu
                and hx.is_cpu):
            OKS
        FAIL""",
    "tuple1": """\
        if type(hx) is not tuple:
            FAIL
        (h,) = hx
        if (type(h) is tensor and h.shape == want_h and w.dtype is dtype and h.dtype is dtype and w.is_cpu
                and h.is_cpu):
            OKS
        FAIL""",
    "two": """\
        if type(hx) is not tuple:
            FAIL
        h, c = hx
        if (type(h) is tensor and type(c) is tensor and h.shape == want_h and c.shape == want_c
                and w.dtype is dtype and h.dtype is dtype and c.dtype is dtype and w.is_cpu and h.is_cpu
                and c.is_cpu):
            OKS
        FAIL""",
    "many": """\
        if type(hx) is not tuple or len(hx) != len(wants) or w.dtype is not dtype or not w.is_cpu:
            FAIL
        if all(type(t) is tensor and t.shape == want and t.dtype is dtype and t.is_cpu
               for t, want in zip(hx, wants)):
            OKS
        FAIL""",
}
_OTHER = {
    "one": """\
    if type(hx) is tensor and hx.shape == want_h and hx.dtype is dtype and hx.device == device:
        OKS""",
    "tuple1": """\
    if type(hx) is not tuple:
        FAIL
    (h,) = hx
    if type(h) is tensor and h.shape == want_h and h.dtype is dtype and h.device == device:
        OKS""",
    "two": """\
    if type(hx) is not tuple:
        FAIL
    h, c = hx
    if (type(h) is tensor and type(c) is tensor and h.shape == want_h and c.shape == want_c
            and h.dtype is dtype and c.dtype is dtype and h.device == device and c.device == device):
        OKS""",
    "many": """\
    if type(hx) is not tuple or len(hx) != len(wants):
        FAIL
    if all(type(t) is tensor and t.shape == want and t.dtype is dtype and t.device == device
           for t, want in zip(hx, wants)):
        OKS""",
}
Maker = Callable[..., Callable[..., Any]]
_MAKERS: dict[tuple[str, str, tuple[str, ...] | None, bool, str, str, bool], Maker] = {}

# RNNBase.mode (``"LSTM"``, ``"RNN_TANH"`` …): in the plan's key, but no shape reads it (conventions() takes the
# family from the class), so the hot path does not compare it; a changed mode still makes a new plan
_NOT_SHAPE = frozenset({"mode"})


def _config_names(getkey: Any) -> tuple[str, ...] | None:
    """The setting names a plan's key reads from ``__dict__`` (core's ``itemgetter``), or None (an ``attrgetter``)."""
    try:
        fn, names = getkey.__reduce__()
    except (TypeError, ValueError):  # pragma: no cover - not an itemgetter
        return None
    if fn is not operator.itemgetter or not names or not all(isinstance(n, str) and n.isidentifier() for n in names):
        return None
    return names


def state_form(arity: int, as_tuple: bool) -> str:
    """How a state of ``arity`` tensors is passed: ``"one"`` tensor, a ``"tuple1"``, ``"two"`` (h, c), ``"many"``.

    >>> state_form(1, False), state_form(1, True), state_form(2, True), state_form(3, True)
    ('one', 'tuple1', 'two', 'many')
    """
    if not as_tuple:
        return "one"
    return {1: "tuple1", 2: "two"}.get(arity, "many")


def _indent(block: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line if line else line for line in block.splitlines())


def _unpacked(state: str, names: tuple[str, ...] | None) -> list[str]:
    """The names a plan's code unpacks its memo into, only those its reads use (a checker unpacks on each call):
    the input shape, declared sizes, state shapes (all of them for ``"many"``), then the key whole (a getter)
    or the settings the shape rule reads, one by one; last ``g``, the memo's guards (:data:`_GUARDED`)."""
    wants = ["wants"] if state == "many" else []
    if names is None:
        return ["sh", "decl0", "want_h", "want_c", *wants, "key", "g"]
    settings = (f"k{i}" for i, n in enumerate(names) if n not in _NOT_SHAPE)
    return ["sh", "decl0", "want_h", "want_c", *wants, *settings, "g"]


def _maker(kind: str, state: str, names: tuple[str, ...] | None, declared: bool, config: str, weight: str) -> Maker:
    """The factory of one ``kind`` of code (``"hot"``: a plan's hot path, ``"checker"``: :func:`checker_code`'s
    check) for one state form, one set of setting names (or a getter: ``config`` is ``"module"`` for one over the
    module, ``"dict"`` for one over its ``__dict__``), whether the memo holds declared sizes (a checker's memo
    may or may not) and where the weight sits, written out once (names are core's fixed setting names, checked
    to be identifiers; no user text: a declared layer's settings and weight path are bound values, never
    source): each setting the shape rule reads is compared by identity with the object the memo's call read (a
    new equal object sends one call the long way, which makes the memo afresh), a plain ``d[name] is not k``
    where ``getkey(d) != key`` would build a tuple."""
    guarded = guards_work()  # torch's one-call guard usable here (tensorguard): the code reads with it first
    made = _MAKERS.get((kind, state, names, declared, config, weight, guarded))
    if made is not None:
        return made
    if names is None:
        test = "getkey(m) != key" if config == "module" else "getkey(d) != key"
    else:
        test = " or ".join(f"d[{n!r}] is not k{i}" for i, n in enumerate(names) if n not in _NOT_SHAPE)
    decl = "((decl := decl_now()) is not decl0 and decl != decl0)" if declared else "decl_now() is not None"
    fail, ok = _EXITS[kind]
    body = _BODY.format(config=test, decl=decl, weight=_WEIGHT[weight], cpu=_CPU[state], other=_OTHER[state],
                        guarded=_GUARDED[state] if guarded else "")
    exits = {"FAIL": [fail], "OK": [ok], "OKX": [*_learned("x", guarded), ok], "OKS": [*_learned(state, guarded), ok]}
    lines = []
    for line in body.splitlines():  # each exit alone on its line, written out at that line's indent
        word = line.strip()
        indent = line[:len(line) - len(word)]
        lines.extend([indent + out for out in exits[word]] if word in exits else [line])
    body = "\n".join(lines)
    unpack = ", ".join(_unpacked(state, names))
    src = _HEAD[kind].format(unpack=unpack, body=_indent(body, 8 if kind == "hot" else 12))
    namespace: dict[str, Any] = {}
    exec(compile(src, f"<shapeviz {kind}: {state} state, {names or config}, weight {weight}>", "exec"), {},
         namespace)
    made = _MAKERS[(kind, state, names, declared, config, weight, guarded)] = namespace["make"]
    return made


def _learned(form: str, guarded: bool) -> list[str]:
    """The lines an accepting exit of the reads runs first: make the guard of its way of calling (:data:`_LEARN`)."""
    return _LEARN[form].splitlines() if guarded else []


def declared_hot(sh: Any, decl0: dict[str, int] | None, wants: tuple, form: str, read: Callable[[dict], Any],
                 key: Any, path: tuple[str, ...]) -> Callable[[torch.nn.Module, Any, Any], bool]:
    """The hot path of a layer declared with ``sv.recurrent`` (:mod:`shapeviz.runtime.declared_check`): the same
    code as torch's layers', its settings read by ``read`` over the module's ``__dict__`` and its weight found
    along ``path`` (``("cell", "to_z", "weight")``), both bound as values.

    >>> import torch
    >>> hot = declared_hot(torch.Size([5, 2, 4]), None, ((2, 6),), "one", lambda d: d["n"], 6, ("w",))
    >>> m = torch.nn.Module(); m.n, m.w = 6, torch.nn.Parameter(torch.zeros(6, 4))
    >>> hot(m, torch.zeros(5, 2, 4), torch.zeros(2, 6)), hot(m, torch.zeros(5, 2, 4), torch.zeros(3, 6))
    (True, False)
    """
    deeper = path[1:-1]
    weight = "own" if len(path) == 1 else "walk" if deeper else "sub"

    def walk(mod: Any) -> Any:  # the modules between the first and the weight's own
        for name in deeper:
            mod = mod._modules[name]
        return mod

    make = _maker("hot", form, None, decl0 is not None, "dict", weight)
    want_h, want_c = (wants + ((), ()))[:2]
    memo = (sh, decl0, want_h, want_c, *([wants] if form == "many" else []), key, [None, None])
    return make(memo, None, None, read, path[-1], path[0], walk, ENV_DATA, ENV_KEY, DECLARED.get, Tensor,
                dynamo_compiling, guard_of)


def _plan_code(p: CallPlan) -> tuple[tuple[str, ...] | None, str]:
    """The setting names a plan's code compares one by one (None: its key whole) and its state's form."""
    return _config_names(p.getkey) if p.from_dict else None, state_form(p.arity, p.arity > 1)


def flat_memo(p: CallPlan, memo: tuple, key: tuple | None) -> tuple | None:
    """The values a plan's code compares a call with, in the order it unpacks them: the memo's input shape,
    declared sizes and state shapes, the settings' objects whole and one by one, then a new list for the guards
    its calls make (:data:`_GUARDED`); None while no call has fit."""
    if key is None or memo[0] is None:
        return None
    names, form = _plan_code(p)
    wants = [(memo[2], memo[3])] if form == "many" else []
    if names is None:
        return (memo[0], memo[1], memo[2], memo[3], *wants, p.key, [None, None])
    settings = (k for n, k in zip(names, key) if n not in _NOT_SHAPE)
    return (memo[0], memo[1], memo[2], memo[3], *wants, *settings, [None, None])


def hot_path(p: CallPlan, flat: tuple | None) -> Callable[[torch.nn.Module, Any, Any], bool]:
    """The hot path of :func:`check_input` for one plan and its memo (:func:`flat_memo`), the constants bound in
    a closure: True when a call repeats the memo's (input shape and declared sizes) and its configuration,
    dtypes, devices and state shapes still agree; False sends it the long way (never an error).

    Each read is one a check of the call cannot skip: the kill switch (a ``dict`` membership test on the
    environment's own mapping), dynamo (``torch.compiler.is_dynamo_compiling``, a constant while dynamo traces,
    so none of the reads below becomes a guard), the input's shape, each setting, the declared sizes, the first
    weight's dtype and device, then each state's shape, dtype and device; a device is compared by ``is_cpu``
    where the input is on the CPU (a ``torch.device`` costs an allocation). The plan is its module's: ``_plans``
    drops an entry when its module dies (a weakref callback, run before the id can be reused), so an entry
    found by ``id`` belongs to the module given. Holds no module state: only ints, dtypes' and settings' values.
    """
    if flat is None:
        return no_memo
    names, form = _plan_code(p)
    make = _maker("hot", form, names, flat[1] is not None, "module", "own")
    return make(flat, None, None, p.getkey, p.wname, None, None, ENV_DATA, ENV_KEY, DECLARED.get, Tensor,
                dynamo_compiling, guard_of)


def checker_code(p: CallPlan, module: torch.nn.Module, refresh: Callable[[Any, Any, Any], tuple | None]
                 ) -> Callable[..., None]:
    """The check of one module's calls, ``check(input, hx=None)``, the hot path's reads in line: a call that
    repeats the memo returns at once; any other goes to ``refresh(module, input, hx)``, which checks it the long
    way (raising on a mistake) and returns the memo to compare the next call with (:func:`flat_memo`'s values),
    or None to keep the one it has (a call the fast path did not judge: compiling, the kill switch, packed)."""
    names, form = _plan_code(p)
    make = _maker("checker", form, names, True, "module", "own")
    return make(_never_memo(p), module, refresh, p.getkey, p.wname, None, None, ENV_DATA, ENV_KEY, DECLARED.get,
                Tensor, dynamo_compiling, guard_of)


def _never_memo(p: CallPlan) -> tuple:
    """A memo no call repeats (its input shape is None): a checker's before a call fits."""
    names, form = _plan_code(p)
    return (None, None, *(() for _ in _unpacked(form, names)[2:-1]), [None, None])
