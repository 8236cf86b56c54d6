"""The check that runs while ``torch.compile`` traces: shapes are known then, so it costs no run time.

>>> import torch, torch.nn as nn
>>> rnn = nn.LSTM(8, 16)  # seq-first: (T, bs, emb=8)
>>> compiled_fault(rnn, torch.randn(5, 3, 8), None, None), compiled_fault(rnn, torch.randn(5, 3, 9), None, None)
(False, True)

:func:`check_compiling` is what :func:`shapeviz.runtime.fastcheck.check_input` calls when dynamo traces a
checked call. It is a pure function of module attributes and tensor shapes, dtypes and
devices, so dynamo evaluates it at trace time: what it reads becomes guards dynamo keeps anyway (the
module's sizes, the tensors' shapes) and nothing reaches the graph. The shape rule is the module's
:class:`~shapeviz.core.model.Layout`; the evidence rule is :mod:`shapeviz.core.evidence`.

A symbolic size (``mark_dynamic``, automatic dynamic, ``dynamic=True``) is compared as torch's own
``check_forward_args`` compares it (input_size, the state's shape): the guard is the one torch's comparison
adds anyway, so such a size is still checked and no recompile comes of it. Declared-size evidence reads only
static sizes (``has_static_value``): it never adds a guard. Declared sizes are the ones in force when dynamo
traces: ``sv.dims`` around the compiled call, and ``watch(model, inputs=...)``: the sizes of that model's input
in the call being compiled, read from its frame on the real Python stack (the static ones are guarded by dynamo
anyway, so a new size recompiles and is read again). ``PackedSequence`` inputs are not checked while compiling.
Layers declared with ``sv.recurrent`` are (:func:`check_declared_compiling`): their sizes are read from the
module's attributes, as torch's are, and the rule is the same :func:`~shapeviz.core.callfit.call_fits`.

On a failure the message is built by :func:`shapeviz.runtime.diagnosis.diagnose` from stand-in tensors
of the same shapes, dtypes and devices, and raised as :class:`CompiledShapeError`: in default mode dynamo
then runs the frame eagerly, where the eager check raises the real :class:`~shapeviz.ShapeError`; under
``fullgraph=True`` dynamo's error quotes it (code and text).

This module is imported only while dynamo traces (it imports ``torch.fx.experimental.symbolic_shapes``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from torch.fx.experimental import symbolic_shapes
from torch.fx.experimental.symbolic_shapes import has_static_value, statically_known_true

from shapeviz.core.callfit import CallRule, Sizes, call_fits, call_rule
from shapeviz.core.declared import declaration_of
from shapeviz.core.dimensions import DECLARED, live_declared
from shapeviz.core.model import CELL_TYPES, FAMILIES, LAYER_TYPES, Conventions, declared_conventions
from shapeviz.runtime.fastcheck import call_args
from shapeviz.runtime.switches import env_disabled

__all__ = ["CompiledShapeError", "check_compiling", "check_declared_compiling", "compiled_fault"]


def _hint_function(names: tuple[str, ...] = ("optimization_hint", "size_hint", "hint_int")) -> Any:
    """torch's function for a symbolic size's value in the call being traced, adding no guard. Its name
    changed across releases: torch 2.13 has ``optimization_hint``; 2.11 has ``size_hint`` and a deprecated
    ``hint_int``. A deprecated one warns, which dynamo cannot trace (a graph break), so it comes last.

    >>> _hint_function()(3)
    3
    """
    found = [f for f in (getattr(symbolic_shapes, n, None) for n in names) if f is not None]
    fresh = [f for f in found if not hasattr(f, "__deprecated__")]
    return (fresh or found)[0]


optimization_hint = _hint_function()

Key = tuple[str, bool, int, int, int, bool, bool, int]


class CompiledShapeError(RuntimeError):
    """A shapeviz check failed while dynamo traced; the argument is the :class:`~shapeviz.ShapeError` text.

    >>> str(CompiledShapeError("shapeviz.ShapeError: [input_size] ..."))
    'shapeviz.ShapeError: [input_size] ...'
    """


@torch.compiler.assume_constant_result
def declared_now() -> tuple[tuple[str, int], ...] | None:
    """The declared sizes when dynamo traces, as a constant (dynamo cannot trace ``ContextVar.get``):
    ``sv.dims`` and, for a call of a model named by ``watch(model, inputs=...)``, the sizes its input gives
    those names, read from that call's frame on the real Python stack (:func:`~shapeviz.runtime.rootcall.
    stack_declared`: the traced call declares nothing itself).

    >>> declared_now() is None
    True
    """
    from shapeviz.runtime.rootcall import stack_declared

    d = live_declared() if DECLARED.get() is not None else None
    named = stack_declared()
    if named:
        d = {**(d or {}), **named}
    return None if d is None else tuple(d.items())


@torch.compiler.assume_constant_result
def disabled_now() -> bool:
    """``SHAPEVIZ_DISABLE`` when dynamo traces, as a constant: read by the trace, with no guard on the
    environment (a guard on it would recompile every compiled model that is checked whenever any environment
    variable is set; the check costs a compiled call nothing, so the switch needs no guard).

    >>> disabled_now()
    False
    """
    return env_disabled()


@torch.compiler.assume_constant_result
def rule_of(key: Key) -> CallRule:
    """The :class:`~shapeviz.core.callfit.CallRule` of a configuration, as a constant.

    >>> rule = rule_of(("GRU", False, 4, 6, 2, True, True, 0))
    >>> rule.t_axis, rule.bs_axis, rule.states[0]
    (1, 0, ((4, 'bs', 6),))
    """
    return call_rule(Conventions(*key))


def config_of(module: nn.Module) -> Key:
    """The configuration of a recurrent module, read attribute by attribute (dynamo guards each read).

    >>> config_of(nn.LSTMCell(3, 5))
    ('LSTM', True, 3, 5, 1, False, False, 0)
    """
    for fam, layer, cell in zip(FAMILIES, LAYER_TYPES, CELL_TYPES, strict=True):
        if isinstance(module, cell):
            return fam, True, module.input_size, module.hidden_size, 1, False, False, 0
        if isinstance(module, layer):
            return (fam, False, module.input_size, module.hidden_size, module.num_layers, module.bidirectional,
                    module.batch_first, module.proj_size)
    raise TypeError(f"{type(module).__name__} is not a recurrent module")


def _static(*sizes: Any) -> tuple[int, ...] | None:
    """The sizes as ints when each is static (not a symbolic size of dynamic shapes), else None; no guard."""
    for s in sizes:
        if not has_static_value(s):
            return None
    return tuple(optimization_hint(s) for s in sizes)


def _differs(a: Any, b: Any) -> bool:
    """``a != b`` for a size torch's own ``check_forward_args`` compares too (emb, the state's shape): a
    symbolic size gets the guard torch's comparison adds anyway, so a size dynamo made dynamic is still
    checked (at trace time, with the same code as eagerly) and no extra recompile comes of it."""
    return bool(a != b)


def _shape_differs(shape: Any, want: tuple[Any, ...]) -> bool:
    if len(shape) != len(want):
        return True
    return any(_differs(a, b) for a, b in zip(shape, want, strict=True))


SYMBOLIC = Sizes(differs=_differs, shape_differs=_shape_differs,
                 known_zero=lambda n: statically_known_true(n == 0), ints=_static)
"""How the rule compares sizes while dynamo traces: a symbolic size as torch compares it; evidence from
declared sizes only where the sizes are static (no guard is added for it)."""


def compiled_fault(module: nn.Module, x: Any, hx: Any, decl: tuple[tuple[str, int], ...] | None) -> bool:
    """True when the call ``module(x, hx)`` certainly does not fit: the rule of :mod:`shapeviz.core.callfit`,
    as the eager check reads it, with dynamo's comparisons (:data:`SYMBOLIC`).

    >>> cell = nn.GRUCell(4, 6)
    >>> compiled_fault(cell, torch.randn(2, 4), torch.zeros(2, 6), None)
    False
    >>> compiled_fault(cell, torch.randn(5, 4), None, (("bs", 2), ("T", 5)))  # (T, emb)? the diagnosis decides
    True
    """
    if not isinstance(x, Tensor):
        return False  # PackedSequence and others: not checked while compiling
    key = config_of(module)
    w = module.weight_ih if key[1] else module.weight_ih_l0  # as dynamo reads it best
    return call_fits(rule_of(key), x, hx, w, None if decl is None else dict(decl), SYMBOLIC) is None


def _all_static(*values: Any) -> bool:
    """Every size of these tensors (and of tensors in these tuples/lists) is static."""
    for v in values:
        if isinstance(v, Tensor):
            if _static(*v.shape) is None:
                return False
        elif isinstance(v, (tuple, list)) and not _all_static(*v):
            return False
    return True


def _describe(v: Any) -> Any:
    """A constant standing for a call argument: ``("t", shape, dtype, device)``, a sequence, or a type name.

    A symbolic size is described by its value in the call being traced (``optimization_hint``: no guard).
    """
    if v is None:
        return None
    if isinstance(v, Tensor):
        return "t", tuple(optimization_hint(s) for s in v.shape), v.dtype, v.device
    if isinstance(v, (tuple, list)):
        return "seq", isinstance(v, tuple), tuple(_describe(e) for e in v)
    return "obj", type(v).__name__


def _stand_in(desc: Any) -> Any:
    """A value with the described shape, dtype and device that allocates one element (never read)."""
    if desc is None:
        return None
    if desc[0] == "t":
        return torch.empty((), dtype=desc[2], device=desc[3]).expand(desc[1])
    if desc[0] == "seq":
        items = [_stand_in(e) for e in desc[2]]
        return tuple(items) if desc[1] else items
    return type(desc[1], (), {})()


# the attributes PyTorch's extra_repr of a recurrent module reads (the label of an eager ShapeError)
_REPR_ATTRS = ("input_size", "hidden_size", "proj_size", "num_layers", "bias", "batch_first", "dropout",
               "bidirectional", "nonlinearity")


@torch.compiler.assume_constant_result
def failure_text(key: Key, cls: type, attrs: tuple[tuple[str, Any], ...], x: Any, hx: Any, w: Any,
                 decl: tuple[tuple[str, int], ...] | None, path: str | None) -> str:
    """The :class:`~shapeviz.ShapeError` text for a failed traced check, from constant descriptions.

    >>> x = ("t", (5, 3, 9), torch.float32, torch.device("cpu"))
    >>> w = ("t", (64, 8), torch.float32, torch.device("cpu"))
    >>> key = ("LSTM", False, 8, 16, 1, False, False, 0)
    >>> failure_text(key, nn.LSTM, (), x, None, w, None, None)[:46]
    'shapeviz.ShapeError: [input_size] LSTM(8, 16):'
    """
    from shapeviz.runtime.diagnosis import diagnose

    try:  # the label an eager check prints: the class name and PyTorch's extra_repr
        label = f"{cls.__name__}({cls.extra_repr(SimpleNamespace(**dict(attrs)))})"
    except Exception:  # a subclass whose extra_repr reads more: the conventions' own label
        label = ""
    weight = _stand_in(w)
    module = SimpleNamespace(weight_ih=weight, weight_ih_l0=weight,
                             _parameters={"weight_ih": weight, "weight_ih_l0": weight})
    conv = Conventions(*key, label=label)
    err = diagnose(module, conv, _stand_in(x), _stand_in(hx), None if decl is None else dict(decl),
                   path)  # type: ignore[arg-type]
    return "" if err is None else f"shapeviz.ShapeError: {err}"


def check_compiling(module: nn.Module, args: tuple, kwargs: dict[str, Any], path: str | None) -> None:
    """The check of a call ``module(*args, **kwargs)`` while dynamo traces; raises :class:`CompiledShapeError`.

    >>> check_compiling(nn.RNN(4, 6), (torch.randn(5, 2, 4),), {}, None)  # (T=5, bs=2, emb=4): fine
    """
    if disabled_now():
        return
    x, hx = call_args(args, kwargs)
    decl = declared_now()
    if not compiled_fault(module, x, hx, decl):
        return
    if not _all_static(x, hx):  # dynamic sizes cannot become the constants of failure_text: dynamo runs
        raise CompiledShapeError(  # the frame eagerly, where the eager check raises the real ShapeError
            f"shapeviz.ShapeError: a call of {type(module).__name__} does not fit its conventions (sizes "
            "made dynamic by torch.compile: run the model once uncompiled for the full message)")
    key = config_of(module)
    attrs = tuple((a, getattr(module, a)) for a in _REPR_ATTRS if hasattr(module, a))
    text = failure_text(key, type(module), attrs, _describe(x), _describe(hx),
                        _describe(module.weight_ih if key[1] else module.weight_ih_l0), decl, path)
    if not text:
        return
    if not torch.compiler.is_compiling():  # run eagerly after all (a graph break before here): the eager check
        from shapeviz.runtime.fastcheck import check_module_call

        check_module_call(module, args, kwargs, path)
    raise CompiledShapeError(text)


# ------------------------------------------------------------------------------------- layers of sv.recurrent
# (every constant function takes the class, never the Declaration: dynamo passes classes between them as constants)
@torch.compiler.assume_constant_result
def size_sources(cls: type) -> tuple[tuple[str, Any], ...] | None:
    """Where the ``sv.recurrent`` declaration of a class reads each size (an attribute name or a function of
    the module), as a constant; None for a class that is not declared.

    >>> size_sources(nn.LSTM) is None
    True
    """
    decl = declaration_of(cls)
    return None if decl is None else decl.sizes


def _declared_conv(cls: type, sizes: tuple[tuple[str, int], ...]) -> Conventions:
    decl = declaration_of(cls)
    assert decl is not None  # size_sources said it is declared
    return declared_conventions(decl, dict(sizes))


@torch.compiler.assume_constant_result
def declared_rule_of(cls: type, sizes: tuple[tuple[str, int], ...]) -> tuple[CallRule, str]:
    """The :class:`~shapeviz.core.callfit.CallRule` of a declared layer with these sizes, and the name of the
    weight whose dtype and device are the module's (``""``: its first floating-point parameter), as constants."""
    conv = _declared_conv(cls, sizes)
    return call_rule(conv), conv.layout.weight_name


@torch.compiler.assume_constant_result
def declared_failure_text(cls: type, sizes: tuple[tuple[str, int], ...], x: Any, s: Any, w: Any,
                          dims: tuple[tuple[str, int], ...] | None, path: str | None) -> str:
    """The :class:`~shapeviz.ShapeError` text for a declared layer's failed traced check, from constants."""
    from shapeviz.runtime.declared_diagnosis import diagnose_declared
    from shapeviz.runtime.diagnosis import diagnose

    weight = _stand_in(w)
    module = SimpleNamespace(_parameters={}, parameters=lambda: iter(() if weight is None else (weight,)))
    conv = _declared_conv(cls, sizes)
    judge = diagnose if conv.declaration is None else diagnose_declared
    err = judge(module, conv, _stand_in(x), _stand_in(s), None if dims is None else dict(dims), path)  # type: ignore[arg-type]
    return "" if err is None else f"shapeviz.ShapeError: {err}"


def check_declared_compiling(module: nn.Module, x: Any, s: Any, path: str | None) -> None:
    """The check of a call of a layer declared with ``sv.recurrent`` while dynamo traces: the one rule with
    dynamo's comparisons, as for torch's layers; raises :class:`CompiledShapeError` (dynamo then runs the frame
    eagerly, where the eager check raises the real :class:`~shapeviz.ShapeError`).

    >>> check_declared_compiling(nn.GRU(4, 6), torch.randn(5, 2, 4), None, None)  # not declared: nothing to do
    """
    if disabled_now():
        return
    cls = type(module)
    sources = size_sources(cls)
    if sources is None or not isinstance(x, Tensor):
        return
    # the module's attributes (dynamo guards them, as torch's sizes) or the declaration's functions of it
    sizes = tuple((name, src(module) if callable(src) else getattr(module, src)) for name, src in sources)
    rule, wname = declared_rule_of(cls, sizes)
    w = module._parameters.get(wname) if wname else None
    if w is None:
        w = next((p for p in module.parameters() if p.is_floating_point() or p.is_complex()), None)
    dims = declared_now()
    if call_fits(rule, x, s, w, None if dims is None else dict(dims), SYMBOLIC) is not None:
        return
    if not _all_static(x, s):
        raise CompiledShapeError(
            f"shapeviz.ShapeError: a call of {cls.__name__} does not fit its conventions (sizes "
            "made dynamic by torch.compile: run the model once uncompiled for the full message)")
    text = declared_failure_text(cls, sizes, _describe(x), _describe(s), _describe(w), dims, path)
    if text:
        raise CompiledShapeError(text)
