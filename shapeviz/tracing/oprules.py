"""Op rules: how the names of an op's inputs carry to its result, and how tensors are found in arguments.

>>> from shapeviz.tracing.naming import Namer, OpView
>>> from shapeviz.tracing.records import TensorInfo
>>> x = TensorInfo((5, 2, 8), ("T", "bs", "h"))
>>> op_rule("transpose", (None, 0, 1), {})(OpView([x], (2, 5, 8), Namer({}, {})))
['bs', 'T', 'h']
>>> op_rule("reshape", (), {})(OpView([x], (10, 8), Namer({}, {})))
['T*bs', 'h']
>>> op_rule("view", (), {})(OpView([x], (2, 5, 8), Namer({"T": 5, "bs": 2}, {})))  # not a transpose
['', '', 'h']

A rule names only what the op provably carries (a transpose swaps names, a matmul keeps the
left rows and the right columns, an in-order merge joins names); anything else is left to
:func:`shapeviz.tracing.naming.like` and to sizes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch.nn.utils.rnn import PackedSequence

from shapeviz.core.dimensions import is_simple_name
from shapeviz.tracing.dimparts import merges, view_names
from shapeviz.tracing.dimparts import prod as _prod
from shapeviz.tracing.indexing import index_items, index_plan, shortened
from shapeviz.tracing.modulerules import Sliding, attention
from shapeviz.tracing.naming import Names, OpView, Rule, guess

__all__ = ["MAX_LIST", "RESHAPES", "flatten", "has_tensor", "op_name", "op_params", "op_rule", "view_names"]

RESHAPES = frozenset({"reshape", "view", "flatten"})
"""The ops that relabel dims without moving data (their names follow :func:`view_names`)."""

MAX_LIST = 6
"""List elements of differing shapes recorded one by one before the rest is cut."""


# ---------------------------------------------------------------- rules
def _permute(order: Sequence[int]) -> Rule:
    def rule(op: OpView) -> Names:
        src = op.names(0)
        return [src[d] for d in order]
    return rule


def _transpose(d0: int, d1: int) -> Rule:
    def rule(op: OpView) -> Names:
        src = op.names(0)
        a, b = d0 % len(src), d1 % len(src)
        src[a], src[b] = src[b], src[a]
        return src
    return rule


def _movedim(source: Any, destination: Any) -> Rule | None:
    """``x.movedim(1, 0)`` (``moveaxis``): the moved dims take their new places, the others keep their order."""
    src = list(source) if isinstance(source, (tuple, list)) else [source]
    dst = list(destination) if isinstance(destination, (tuple, list)) else [destination]
    if len(src) != len(dst) or not all(isinstance(d, int) and not isinstance(d, bool) for d in (*src, *dst)):
        return None

    def rule(op: OpView) -> Names | None:
        names = op.names(0)
        n = len(names)
        moved = [d % n for d in src]
        order: list[int | None] = [None] * n
        for s, d in zip(moved, dst):
            order[d % n] = s
        rest = iter(i for i in range(n) if i not in moved)
        return [names[i if i is not None else next(rest)] for i in order]
    return rule


def _rot90(k: Any, dims: Any) -> Rule | None:
    """``torch.rot90(x, k, dims)``: an odd ``k`` swaps the two dims (their sizes and so their names)."""
    if not isinstance(k, int) or not isinstance(dims, (tuple, list)) or len(dims) != 2:
        return None
    return _transpose(int(dims[0]), int(dims[1])) if k % 2 else _in_place


def _in_place(op: OpView) -> Names:
    return op.names(0)


def _einsum(equation: Any) -> Rule | None:
    """``torch.einsum("btd->tbd", x)``: each output letter is named as the operand dim it comes from (read from the
    equation's letters, never evaluated); ``...`` stands for the same dims, counted from the right, in every
    operand that has it and in the output."""
    if not isinstance(equation, str):
        return None
    eq = equation.replace(" ", "")
    ins, arrow, out = eq.partition("->")
    subs = ins.split(",")
    if not arrow:
        letters = "".join(subs).replace("...", "")
        out = ("..." if "..." in ins else "") + "".join(sorted(ch for ch in set(letters) if letters.count(ch) == 1))

    def rule(op: OpView) -> Names | None:
        if len(subs) != len(op.ins):
            return None
        where: dict[str, str | None] = {}
        spans = []
        for k, sub in enumerate(subs):
            head, dots, tail = sub.partition("...")
            n_dots = len(op.ins[k].shape) - len(head) - len(tail) if dots else 0
            if n_dots < 0 or (not dots and len(sub) != len(op.ins[k].shape)):
                return None
            spans.append(n_dots)
            dims = [*head, *(f"...{n_dots - j}" for j in range(n_dots)), *tail]  # ...1: the last of the dots
            for pos, key in enumerate(dims):
                where.setdefault(key, op.names(k)[pos])
        head, dots, tail = out.partition("...")
        n_dots = max(spans, default=0) if dots else 0
        keys = [*head, *(f"...{n_dots - j}" for j in range(n_dots)), *tail]
        return [where.get(key) for key in keys] if len(keys) == len(op.shape) else None
    return rule


def _reverse(op: OpView) -> Names:
    return op.names(0)[::-1]


def _swap_last_two(op: OpView) -> Names:
    src = op.names(0)
    src[-1], src[-2] = src[-2], src[-1]
    return src


def _matmul(op: OpView) -> Names | None:
    if len(op.ins) != 2:
        return None
    a, b = op.names(0), op.names(1)
    if not a or not b:
        return None
    if len(b) == 1:  # (…, n, k) @ (k,): a matrix-vector product keeps the matrix's leading dims
        return a[:-1]
    if len(a) == 1:  # (k,) @ (…, k, m)
        return b[:-2] + [b[-1]]
    lead = a if len(a) >= len(b) else b
    return lead[:-2] + [a[-2], b[-1]]


def _linear(op: OpView) -> Names | None:
    if len(op.ins) < 2:
        return None
    return op.names(0)[:-1] + [op.names(1)[0]]


def _embedding(op: OpView) -> Names:
    return op.names(0) + [op.names(1)[-1]]


def _one_hot(op: OpView) -> Names:
    return op.names(0) + [None]


def _cat(dim: int) -> Rule:
    def rule(op: OpView) -> Names | None:
        ins = op.ins
        first = op.names(0)
        d = dim % len(first)
        out = list(first)
        count = sum(i.repeat for i in ins)
        if count == 1:
            return out
        same = all(len(i.shape) == len(first) and i.shape[d] == ins[0].shape[d] and op.names(k)[d] == first[d]
                   for k, i in enumerate(ins))
        name = first[d]
        if not same or not name or not is_simple_name(name):
            out[d] = None
        elif op.namer.size_of(name) == op.shape[d] and (ins[0].shape[d] > 1 or name != "T"):
            out[d] = name  # parts of dim `name` joined along it, as long as it is
        elif ins[0].shape[d] == 1 and op.namer.count_name(count) == name == "T":
            out[d] = name if op.namer.counts else guess(name)  # one-step pieces, as many as T has steps
        else:
            n = op.namer.count_name(count) if name == "bs" else None
            out[d] = f"{n}*{name}" if n == "T" else None  # T pieces of a batch's rows, time-major
        return out
    return rule


def _stack(dim: int) -> Rule:
    """``stack``: the new dim counts the pieces; that the count equals a size is no evidence (a decoder's steps, a
    query's positions): in a trace the new dim is named by its size, as a guess, if at all. The ``ops=True``
    flow reads as many pieces as T has steps as T (its flatten-order check of a loop's stacked step logits)."""
    def rule(op: OpView) -> Names:
        out = op.names(0)
        n = op.namer.count_name(sum(i.repeat for i in op.ins)) if op.namer.counts else None
        out.insert(dim % (len(out) + 1), n if n == "T" else None)
        return out
    return rule


def _interleaved(repeats: int, dim: int) -> Rule:
    """``repeat_interleave(x, k, dim)``: each row of that dim ``k`` times in a row, ``bs`` becomes ``bs*k`` (the
    copies inner), as the ``ops=True`` flow names it."""
    def rule(op: OpView) -> Names | None:
        out = op.names(0)
        if len(out) != len(op.shape):
            return None
        d = dim % len(out)
        if repeats != 1:
            out[d] = f"{out[d]}*{repeats}" if out[d] else None
        return out
    return rule


SIZES_KEPT = frozenset({"expand", "expand_as", "broadcast_to", "repeat", "tile", "split", "chunk", "tensor_split",
                        "split_with_sizes", "unsafe_split", "unsafe_chunk", "hsplit", "vsplit", "dsplit", "narrow",
                        "narrow_copy", "index_select", "pad", "interpolate"})
"""Ops whose result lines up with their input from the right (new dims lead), every dim of unchanged size being
the input's own: torch can only grow a size-1 dim (``expand``), repeat a dim (``repeat``), cut the split one
(``split``, ``narrow``), pick along one (``index_select``), pad some (``F.pad``) or resize the spatial ones
(``F.interpolate``)."""


def _sizes_kept(op: OpView) -> Names | None:
    """``h.expand(L, bs, k, H)``, ``z.repeat(1, T, 1)``, each piece of ``torch.split(x, 3, dim=1)``: a dim whose size
    is unchanged keeps its name (a size-1 dim included: it is the input's), a grown or cut one has none, new ones
    lead unnamed. (Their sizes may still be guessed: ``T?``.)"""
    src, names = op.ins[0].shape, op.names(0)
    lead = len(op.shape) - len(src)
    if lead < 0:
        return None
    return [None] * lead + [n if s == o else None for n, s, o in zip(names, src, op.shape[lead:])]


def _unflatten(dim: int, parts: int) -> Rule:
    """``x.unflatten(2, (2, 4))``: the dim split has no name (its pieces none either), the others keep theirs."""
    def rule(op: OpView) -> Names | None:
        out = op.names(0)
        if not out:
            return None
        d = dim % len(out)
        return [*out[:d], *[None] * parts, *out[d + 1:]]
    return rule


def _windows(dim: int) -> Rule:
    """``x.unfold(0, 3, 1)``: the windows' count stands where the dim was, unnamed, and their size is a new last
    dim, unnamed; the others keep their names."""
    def rule(op: OpView) -> Names | None:
        out = op.names(0)
        if not out:
            return None
        out[dim % len(out)] = None
        return [*out, None]
    return rule


def _unsqueeze(dim: int) -> Rule:
    def rule(op: OpView) -> Names:
        out = op.names(0)
        out.insert(dim % (len(out) + 1), None)
        return out
    return rule


def _squeeze(dims: Sequence[int] | None) -> Rule:
    """``squeeze(x, dim)`` (or every dim, or a tuple of them): the size-1 dims among them go, the others keep
    their names (a dim of another size is left as it is, as torch leaves it)."""
    def rule(op: OpView) -> Names | None:
        shape, out = op.ins[0].shape, op.names(0)
        if not shape:
            return None
        gone = {d % len(shape) for d in dims} if dims is not None else set(range(len(shape)))
        return [n for i, n in enumerate(out) if not (i in gone and shape[i] == 1)]
    return rule


REDUCTIONS = frozenset({"sum", "mean", "nansum", "nanmean", "prod", "amax", "amin", "max", "min", "std", "var",
                        "logsumexp", "norm", "argmax", "argmin", "median", "all", "any", "count_nonzero"})
"""Ops that reduce over ``dim`` (removing it, or keeping it as size 1 with ``keepdim=True``)."""


def _drop_dims(dims: Sequence[int], keepdim: bool) -> Rule:
    """A reduction or ``unbind`` over ``dims``: the other dims keep their names, in order."""
    def rule(op: OpView) -> Names | None:
        out = op.names(0)
        gone = {d % len(out) for d in dims} if out else set()
        if keepdim:
            return [None if i in gone else n for i, n in enumerate(out)]
        return [n for i, n in enumerate(out) if i not in gone]
    return rule


def _reduction(args: Sequence[Any], kwargs: dict[str, Any]) -> Rule | None:
    dim = _arg(args, kwargs, 1, "dim", None)
    if dim is None or isinstance(dim, torch.Tensor):  # a full reduction (a scalar), or max(a, b)
        return None
    dims = [int(d) for d in dim] if isinstance(dim, (tuple, list)) else [int(dim)]
    return _drop_dims(dims, bool(_arg(args, kwargs, 2, "keepdim", False)))


_OTHER = object()
"""An index item :func:`index_plan` has no plan for (a tensor, a list), as :func:`_getitem` keeps it."""


def _plain_index(index: Any) -> Any:
    """``index`` without tensors, for a rule that names the result after the forward (a trace keeps no tensor):
    each item :func:`index_plan` reads as it is, any other item as one it has no plan for, and a slice with a
    tensor bound as a whole slice (it reads no bounds).

    >>> import torch
    >>> _plain_index((slice(torch.tensor(1), None), 0, None, ...)), _plain_index(torch.tensor([0, 1])) is _OTHER
    ((slice(None, None, None), 0, None, Ellipsis), True)
    """
    def plain(i: Any) -> Any:
        if i is None or i is Ellipsis or isinstance(i, int):
            return i
        if isinstance(i, slice) and all(b is None or (isinstance(b, int) and not isinstance(b, bool))
                                        for b in (i.start, i.stop, i.step)):
            return i  # plain bounds: kept (x[:, 1:] is T-1 steps)
        return slice(None) if isinstance(i, slice) else _OTHER

    return tuple(plain(i) for i in index) if isinstance(index, tuple) else plain(index)


def _getitem(index: Any) -> Rule:
    index = _plain_index(index)

    def rule(op: OpView) -> Names | None:
        src = op.names(0)
        plan = index_plan(len(src), index)
        if plan is None:
            return None
        items = index_items(len(src), index)
        out: Names = []
        for k, size in zip(plan[0], op.shape):
            if k is None or op.ins[0].shape[k] == size:
                out.append(src[k] if k is not None else None)
            else:  # a partial slice: x[:, 1:] is T-1, x[:, :3] no longer T
                out.append(shortened(src[k], items[k], op.ins[0].shape[k], size) if items is not None else None)
        return out
    return rule


def _reshape(op: OpView) -> Names | None:
    """A reshape/view/flatten: names by index bookkeeping (:func:`view_names`); the result of a
    scrambling view is left unnamed (``""``: no guess by size either)."""
    if op.ins[0].repeat != 1 or _prod(op.ins[0].shape) != _prod(op.shape):
        return None
    names, scrambled = view_names(op.ins[0].shape, op.names(0), op.shape, op.namer.size_of)
    if scrambled:
        return [n or "" for n in names]  # "": unnamed, not even guessed by size
    # a flattened size is never guessed: a size cannot tell bs*k from T (nor T*bs from bs*T)
    return ["" if n is None and m else n for n, m in zip(names, merges(op.ins[0].shape, op.shape))]


# ---------------------------------------------------------------- ops
_NO_RECORD = frozenset({
    "size", "dim", "numel", "__len__", "__iter__", "__repr__", "__format__", "__bool__", "item", "tolist",
    "__setitem__", "requires_grad_", "data_ptr", "stride", "is_contiguous", "element_size", "__hash__",
    "__index__", "__int__", "__float__", "__array__", "numpy", "get_device", "__reduce_ex__", "__deepcopy__",
    "storage_offset", "untyped_storage", "_is_view", "is_floating_point", "is_complex", "nelement",
    "ndimension", "__contains__", "__get__", "__set__", "has_names", "__torch_function__", "_version",
})
_PROPS = frozenset({"T", "mT", "H", "mH", "real", "imag"})


def op_name(func: Any) -> str | None:
    """The name an op is shown under, or None for calls that are not worth a record."""
    name = getattr(func, "__name__", None)
    if name == "__get__":
        prop = getattr(getattr(func, "__self__", None), "__name__", None)
        return f".{prop}" if prop in _PROPS else None
    if not isinstance(name, str) or name in _NO_RECORD:
        return None
    return name



def _arg(args: Sequence[Any], kwargs: dict[str, Any], pos: int, key: str, default: Any) -> Any:
    if len(args) > pos:
        return args[pos]
    return kwargs.get(key, default)


_NONE: Any = object()
_STATIC: dict[str, Any] = {}  # op name -> its rule when the arguments do not matter, None for no rule, _NONE: they do
_DYNAMIC = frozenset({"transpose", "swapaxes", "swapdims", "permute", "cat", "concat", "concatenate", "stack",
                      "unsqueeze", "squeeze", "getitem", "unbind", "repeat_interleave", "movedim", "moveaxis",
                      "rot90", "einsum", "unflatten", "unfold"}) | REDUCTIONS


def op_rule(name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Rule | None:
    """The rule that names the result of op ``name`` called with these arguments, or None."""
    hit = _STATIC.get(name, _NONE)
    if hit is not _NONE:
        return hit  # type: ignore[no-any-return]
    base = name.strip("_").lstrip(".")
    if base not in _DYNAMIC:
        rule = _static_rule(base)
        if len(_STATIC) < 4096:
            _STATIC[name] = rule
        return rule
    if base in ("transpose", "swapaxes", "swapdims"):
        return _transpose(int(_arg(args, kwargs, 1, "dim0", 0)), int(_arg(args, kwargs, 2, "dim1", 1)))
    if base == "permute":
        dims = args[1:] if len(args) > 1 else kwargs.get("dims", ())
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = dims[0]
        return _permute([int(d) for d in dims])
    if base in ("movedim", "moveaxis"):
        return _movedim(_arg(args, kwargs, 1, "source", None), _arg(args, kwargs, 2, "destination", None))
    if base == "rot90":
        return _rot90(_arg(args, kwargs, 1, "k", 1), _arg(args, kwargs, 2, "dims", (0, 1)))
    if base == "einsum":
        return _einsum(args[0] if args else kwargs.get("equation"))
    if base in ("cat", "concat", "concatenate"):
        return _cat(int(_arg(args, kwargs, 1, "dim", 0)))
    if base == "stack":
        return _stack(int(_arg(args, kwargs, 1, "dim", 0)))
    if base == "repeat_interleave":
        reps, dim = _arg(args, kwargs, 1, "repeats", None), _arg(args, kwargs, 2, "dim", None)
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (reps, dim))
        return _interleaved(reps, dim) if ok and reps > 0 else None
    if base == "unsqueeze":
        return _unsqueeze(int(_arg(args, kwargs, 1, "dim", 0)))
    if base == "squeeze":
        dim = _arg(args, kwargs, 1, "dim", None)
        if dim is None:
            return _squeeze(None)
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        ok = all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
        return _squeeze([int(d) for d in dims]) if ok else None
    if base == "getitem":
        return _getitem(args[1]) if len(args) > 1 else None
    if base in ("unflatten", "unfold"):
        dim = _arg(args, kwargs, 1, "dim" if base == "unflatten" else "dimension", None)
        if not isinstance(dim, int) or isinstance(dim, bool):
            return None
        if base == "unfold":
            return _windows(dim)
        sizes = _arg(args, kwargs, 2, "sizes", None)
        return _unflatten(dim, len(sizes)) if isinstance(sizes, (tuple, list, torch.Size)) else None
    if base == "unbind":  # `for x_t in x` is unbind(x, 0): each piece drops that dim
        return _drop_dims([int(_arg(args, kwargs, 1, "dim", 0))], False)
    return _reduction(args, kwargs)


FACTORIES = frozenset({"new_zeros", "new_ones", "new_empty", "new_full", "new_tensor"})
"""``x.new_zeros(3, 4, 6)``: a tensor whose sizes are the numbers given, not x's dims (only x's dtype and device)."""


def _sized_only(op: OpView) -> Names:
    """A factory's result (or ``as_strided``'s, whose dims may be any of its input's or none): no dim is one of
    its input's, whatever the sizes (names by size are guesses)."""
    return [None] * len(op.shape)


_SLIDING = {f"{kind}{n}d{tail}": Sliding(n, "pool" in kind)
            for kind in ("conv", "conv_transpose", "max_pool", "avg_pool", "lp_pool", "adaptive_max_pool",
                         "adaptive_avg_pool") for n in (1, 2, 3) for tail in ("", "_with_indices")}
"""Ops that slide along the spatial dims of a ``(bs, C, *spatial)`` input (``conv2d``, ``max_pool1d`` …)."""


def _static_rule(base: str) -> Rule | None:
    """The rule of an op whose arguments do not change it (``base``: its name without ``_`` and ``.``)."""
    if base in FACTORIES:
        return _sized_only
    if base in ("matmul", "mm", "bmm", "rmatmul"):
        return _matmul
    if base == "linear":
        return _linear
    if base == "embedding":
        return _embedding
    if base == "scaled_dot_product_attention":
        return attention
    if base == "one_hot":
        return _one_hot
    if base in _SLIDING:
        return _SLIDING[base]
    if base in ("T", "t"):
        return _reverse
    if base in ("mT", "H", "mH", "adjoint"):
        return _swap_last_two
    if base in RESHAPES:
        return _reshape
    if base in SIZES_KEPT:
        return _sizes_kept
    if base == "as_strided":
        return _sized_only
    return None


def op_params(args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    """A short text of an op's non-tensor arguments: ``"28"``, ``"dim=0"``, ``"-1, 28"``.

    >>> import torch
    >>> op_params((torch.zeros(2, 3), -1, 28), {"dim": 0})
    '-1, 28, dim=0'
    """
    parts = [_fmt(a) for a in args if not isinstance(a, torch.Tensor) and _shown(a)]
    if kwargs:
        parts += [f"{k}={_fmt(v)}" for k, v in kwargs.items() if not isinstance(v, torch.Tensor) and _shown(v)]
    if not parts:
        return ""
    text = ", ".join(parts)
    return text if len(text) <= 40 else text[:39] + "…"


_SCALARS = (bool, int, float, str, torch.dtype)


def _shown(v: Any) -> bool:
    """Whether an argument is shown in an op's params: a scalar, None, or a short tuple of numbers."""
    if v is None or isinstance(v, _SCALARS):
        return True
    return isinstance(v, (tuple, list, torch.Size)) and len(v) <= 6 and all(isinstance(x, (int, float)) for x in v)


def _fmt(v: Any) -> str:
    if isinstance(v, torch.dtype):
        return str(v).replace("torch.", "")
    if isinstance(v, torch.Size):
        return str(tuple(v))
    return repr(v)


def has_tensor(obj: Any) -> bool:
    if isinstance(obj, (torch.Tensor, PackedSequence)):
        return True
    if isinstance(obj, (tuple, list)):
        return any(has_tensor(x) for x in obj)
    if isinstance(obj, dict):
        return any(has_tensor(x) for x in obj.values())
    fields = _fields(obj)
    return fields is not None and any(has_tensor(x) for x in fields.values())


def _fields(obj: Any) -> dict[str, Any] | None:
    """A dataclass instance's fields by name (a model's output bundled as ``Out(logits, hidden)``), else None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
    return None


def flatten(obj: Any, key: str, depth: int = 0, tuples: bool = False,
            alike: Callable[[Any, Any], bool] | None = None) -> Iterable[tuple[str, Any, str]]:
    """(key, tensor, packed-part) for every tensor in nested tuples/lists/dicts/dataclasses/PackedSequences.

    A list of tensors (and with ``tuples=True`` a tuple) yields ``(key, (first, count, the others), "")`` for
    each run of equal shapes (and ``alike``, where given: made the same way), so ``cat`` of T step outputs is
    one record with ``repeat=T``."""
    if isinstance(obj, torch.Tensor):
        yield key, obj, ""
    elif isinstance(obj, PackedSequence):
        yield _join(key, "data"), obj.data, "data"
        yield _join(key, "batch_sizes"), obj.batch_sizes, "batch_sizes"
    elif isinstance(obj, (tuple, list)) and depth < 4:
        k = 0
        emitted = 0
        while k < len(obj):
            item = obj[k]
            if isinstance(item, torch.Tensor):
                j = k + 1
                if isinstance(obj, list) or tuples:
                    while j < len(obj) and isinstance(obj[j], torch.Tensor) and obj[j].shape == item.shape \
                            and obj[j].dtype == item.dtype and (alike is None or alike(item, obj[j])):
                        j += 1
                if j - k > 1:
                    yield _join(key, f"{k}:{j}"), (item, j - k, obj[k + 1:j]), ""
                else:
                    yield _join(key, str(k)), item, ""
                emitted += 1
                k = j
            else:
                yield from flatten(item, _join(key, str(k)), depth + 1, tuples, alike)
                emitted += 1
                k += 1
            if emitted >= MAX_LIST:
                break
    elif isinstance(obj, dict) and depth < 4:
        for i, (k2, v) in enumerate(obj.items()):
            if i >= MAX_LIST:
                break
            yield from flatten(v, _join(key, str(k2)), depth + 1, tuples, alike)
    elif depth < 4 and (fields := _fields(obj)) is not None:
        for k2, v in list(fields.items())[:MAX_LIST]:
            yield from flatten(v, _join(key, k2), depth + 1, tuples, alike)


def _join(key: str, part: str) -> str:
    return f"{key}.{part}" if key else part
