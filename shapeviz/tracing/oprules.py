"""Op rules: how the names of an op's inputs carry to its result, and how tensors are found in arguments.

>>> from shapeviz.tracing.naming import Namer, OpView
>>> from shapeviz.tracing.records import TensorInfo
>>> x = TensorInfo((5, 2, 8), ("T", "bs", "h"))
>>> op_rule("transpose", (None, 0, 1), {})(OpView([x], (2, 5, 8), Namer({}, {})))
['bs', 'T', 'h']
>>> op_rule("reshape", (), {})(OpView([x], (10, 8), Namer({}, {})))
['T*bs', 'h']

A rule names only what the op provably carries (a transpose swaps names, a matmul keeps the
left rows and the right columns, an in-order merge joins names); anything else is left to
:func:`shapeviz.tracing.naming.like` and to sizes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.nn.utils.rnn import PackedSequence

from shapeviz.core.dimensions import is_simple_name
from shapeviz.tracing.naming import Names, OpView, Rule

__all__ = ["MAX_LIST", "flatten", "has_tensor", "op_name", "op_params", "op_rule"]

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
    if len(a) < 2 or len(b) < 2:
        return None
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
        n = op.namer.count_name(count) if same else None
        out[d] = f"{n}*{first[d]}" if n and first[d] and is_simple_name(first[d] or "") else None
        return out
    return rule


def _stack(dim: int) -> Rule:
    def rule(op: OpView) -> Names:
        out = op.names(0)
        out.insert(dim % (len(out) + 1), op.namer.count_name(sum(i.repeat for i in op.ins)))
        return out
    return rule


def _unsqueeze(dim: int) -> Rule:
    def rule(op: OpView) -> Names:
        out = op.names(0)
        out.insert(dim % (len(out) + 1), None)
        return out
    return rule


def _reshape(op: OpView) -> Names | None:
    """Merging neighbouring dims joins their names: (T, bs, vocab) -> (T*bs, vocab)."""
    shape = op.shape
    src_shape, src = op.ins[0].shape, op.names(0)
    out: Names = []
    k, n = 0, len(src_shape)
    for size in shape:
        if size == 1:
            out.append(None)
            if k < n and src_shape[k] == 1:
                k += 1
            continue
        while k < n and src_shape[k] == 1:
            k += 1
        group, prod = [], 1
        while k < n and prod < size:
            prod *= src_shape[k]
            group.append(k)
            k += 1
        if prod != size or not group:  # a split: the rest is named by size
            return out + [None] * (len(shape) - len(out))
        parts = [src[g] for g in group]
        if len(parts) == 1:
            out.append(parts[0])
        elif all(p and is_simple_name(p) for p in parts):
            out.append("*".join(p for p in parts if p))
        else:
            out.append(None)
    return out


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


def op_rule(name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Rule | None:
    """The rule that names the result of op ``name`` called with these arguments, or None."""
    base = name.strip("_").lstrip(".")
    if base in ("matmul", "mm", "bmm", "rmatmul"):
        return _matmul
    if base == "linear":
        return _linear
    if base == "embedding":
        return _embedding
    if base == "one_hot":
        return _one_hot
    if base in ("T", "t"):
        return _reverse
    if base in ("mT", "H", "mH"):
        return _swap_last_two
    if base in ("transpose", "swapaxes", "swapdims"):
        return _transpose(int(_arg(args, kwargs, 1, "dim0", 0)), int(_arg(args, kwargs, 2, "dim1", 1)))
    if base == "permute":
        dims = args[1:] if len(args) > 1 else kwargs.get("dims", ())
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = dims[0]
        return _permute([int(d) for d in dims])
    if base in ("cat", "concat", "concatenate"):
        return _cat(int(_arg(args, kwargs, 1, "dim", 0)))
    if base == "stack":
        return _stack(int(_arg(args, kwargs, 1, "dim", 0)))
    if base == "unsqueeze":
        return _unsqueeze(int(_arg(args, kwargs, 1, "dim", 0)))
    if base in ("reshape", "view", "flatten"):
        return _reshape
    return None


def op_params(args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    """A short text of an op's non-tensor arguments: ``"28"``, ``"dim=0"``, ``"-1, 28"``."""
    def ok(v: Any) -> bool:
        if isinstance(v, (bool, int, float, str, torch.dtype)) or v is None:
            return True
        return isinstance(v, (tuple, list, torch.Size)) and len(v) <= 6 and all(
            isinstance(x, (int, float)) for x in v)

    def fmt(v: Any) -> str:
        if isinstance(v, torch.dtype):
            return str(v).replace("torch.", "")
        if isinstance(v, torch.Size):
            return str(tuple(v))
        return repr(v)

    parts = [fmt(a) for a in args if not has_tensor(a) and ok(a)]
    parts += [f"{k}={fmt(v)}" for k, v in kwargs.items() if not has_tensor(v) and ok(v)]
    text = ", ".join(parts)
    return text if len(text) <= 40 else text[:39] + "…"


def has_tensor(obj: Any) -> bool:
    if isinstance(obj, (torch.Tensor, PackedSequence)):
        return True
    if isinstance(obj, (tuple, list)):
        return any(has_tensor(x) for x in obj)
    if isinstance(obj, dict):
        return any(has_tensor(x) for x in obj.values())
    return False


def flatten(obj: Any, key: str, depth: int = 0, tuples: bool = False) -> Iterable[tuple[str, Any, str]]:
    """(key, tensor, packed-part) for every tensor in nested tuples/lists/dicts/PackedSequences.

    A list of tensors (and with ``tuples=True`` a tuple) yields ``(key, (first, count), "")`` for
    each run of equal shapes, so ``cat`` of T step outputs is one record with ``repeat=T``."""
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
                            and obj[j].dtype == item.dtype:
                        j += 1
                if j - k > 1:
                    yield _join(key, f"{k}:{j}"), (item, j - k), ""
                else:
                    yield _join(key, str(k)), item, ""
                emitted += 1
                k = j
            else:
                yield from flatten(item, _join(key, str(k)), depth + 1, tuples)
                emitted += 1
                k += 1
            if emitted >= MAX_LIST:
                break
    elif isinstance(obj, dict) and depth < 4:
        for i, (k2, v) in enumerate(obj.items()):
            if i >= MAX_LIST:
                break
            yield from flatten(v, _join(key, str(k2)), depth + 1, tuples)


def _join(key: str, part: str) -> str:
    return f"{key}.{part}" if key else part
