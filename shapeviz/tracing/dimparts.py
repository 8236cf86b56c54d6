"""Parts of dims: how a view, a slice, a cat or a stack takes named dims apart and puts them back.

>>> sizes = {"T": 8, "bs": 4}.get
>>> view_names((8, 4, 3), ["T", "bs", "emb"], (4, 8, 3), sizes, pieces=True)  # (T/2, 2*bs, emb)
(['T[2:8]', 'T[1:2]*bs', 'emb'], [])
>>> view_names((4, 8, 3), ["T[2:8]", "T[1:2]*bs", "emb"], (8, 4, 3), sizes)  # and back
(['T', 'bs', 'emb'], [])

A dim name is a plain name (``bs``), a product in memory order (``bs*skip``: bs outer), a count
(``7``: the pieces a cat or stack joined) or a part of a dim, ``T[2:8]``: the strides 2..8 of T
(its outer 4 of 8 steps). Index bookkeeping alone decides: a size that merely matches is never used.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import torch

from shapeviz.core.dimensions import is_simple_name
from shapeviz.core.evidence import bases_of
from shapeviz.tracing.naming import Names

__all__ = ["Pick", "broadcasts", "copied_names", "joined_pick", "merges", "mixes_directions", "pads", "piece_name",
           "prod", "read_as_time", "slice_names", "view_names", "whole_dims"]


_PIECE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|\d+)\[(\d+):(\d+)\]\Z")


class _Atom(NamedTuple):
    """One source dim of a view, or one factor of a product dim: ``base[p:q]`` of a name whose
    strides run 1..size (a whole dim is ``[1:size]``); ``trusted``: its size is known to fit its name."""

    label: str | None
    size: int
    base: str | None
    p: int
    q: int
    trusted: bool


def _parse(part: str, size_of: Callable[[str], int | None]) -> tuple[str, int, int] | None:
    m = _PIECE.match(part)
    if m is not None:
        return m[1], int(m[2]), int(m[3])
    if is_simple_name(part) or part.isdigit():
        size = size_of(part)
        return (part, 1, size) if size else None
    return None


def _sizes(size_of: Callable[[str], int | None]) -> Callable[[str], int | None]:
    """``size_of`` that also knows a count: ``"7"`` (the 7 pieces a cat or stack joined) has size 7."""
    return lambda n: int(n) if n.isdigit() else size_of(n)


def _atoms(src_shape: Sequence[int], src: Names, size_of: Callable[[str], int | None]) -> list[_Atom]:
    """The source's dims as atoms: a product whose factors' sizes are known (all but one is enough:
    D of ``D*h`` is its size over h's) is split into them; a name whose size is not its known size (a
    GRU's "bs" that is really bs*skip) is not trusted."""
    atoms: list[_Atom] = []
    for name, size in zip(src, src_shape):
        if size == 1:
            continue
        names = name.split("*") if name else []
        parts = [_parse(p, size_of) for p in names]
        missing = [i for i, p in enumerate(parts) if p is None]
        if len(names) > 1 and len(missing) == 1 and is_simple_name(names[missing[0]]):  # D of D*h: by division
            known = prod(part[2] // part[1] for part in parts if part is not None)
            if known and size % known == 0 and size // known > 1:
                parts[missing[0]] = (names[missing[0]], 1, size // known)
        if parts and all(parts) and all(q % p == 0 for _, p, q in parts) and \
                prod(q // p for _, p, q in parts) == size:  # type: ignore[misc]
            atoms += [_Atom(text, q // p, n, p, q, True) for text, (n, p, q) in zip(names, parts)]  # type: ignore[misc]
        else:
            atoms.append(_Atom(name, size, None, 1, size, False))
    return atoms


def piece_name(base: str, p: int, q: int, size_of: Callable[[str], int | None]) -> str:
    """The name of the strides ``[p, q)`` of dim ``base``: ``base`` itself when whole, else ``base[p:q]``.

    >>> piece_name("T", 1, 8, {"T": 8}.get), piece_name("T", 2, 8, {"T": 8}.get)
    ('T', 'T[2:8]')
    """
    return base if p == 1 and (size_of(base) == q or base == str(q)) else f"{base}[{p}:{q}]"


def view_names(src_shape: Sequence[int], src: Names, shape: Sequence[int],
               size_of: Callable[[str], int | None], pieces: bool = False) -> tuple[Names, list[str]]:
    """The names of a reshape/view's result by index bookkeeping, and the named dims it scrambles.

    The data keeps its flat order; each source dim (a product ``T*bs`` split into its factors where
    their sizes are known) covers a range of strides. A result dim covering whole neighbouring dims in
    order gets their names joined in that order, and a split of a product gives its factors back.
    Splitting or merging dims in order, even across a dim (``(1, bs*skip, h)`` viewed as
    ``(bs, skip*h)``), never scrambles; a view scrambles when a result dim cuts a named dim of known
    size where no split can (7 steps into rows of 4) and mixes it with another named dim: it
    relabels without moving data. A dim whose size is not its name's known size is not cut-checked.

    >>> sizes = {"T": 7, "bs": 4, "skip": 3, "h": 5}.get
    >>> view_names((4, 7, 8), ["bs", "T", "emb"], (28, 8), sizes)
    (['bs*T', 'emb'], [])
    >>> view_names((4, 7, 8), ["bs", "T", "emb"], (7, 4, 8), sizes)
    ([None, None, 'emb'], ['bs', 'T'])
    >>> view_names((28, 8), ["T*bs", "emb"], (7, 4, 8), sizes)
    (['T', 'bs', 'emb'], [])
    >>> view_names((1, 12, 5), ["layers*D", "bs*skip", "h"], (4, 15), sizes)  # a skip-GRU's state
    (['bs', 'skip*h'], [])

    With ``pieces=True`` a part of a dim is named too, ``T[2:8]`` for the strides 2..8 of T (the
    time-major dilation ``(T, bs)`` viewed as ``(T/2, 2*bs)``), and joining its parts gives T back;
    an unnamed dim joined with a named one counts by its size (``bs*3``: bs outer, 3 inner):

    >>> view_names((8, 4, 3), ["T", "bs", "emb"], (4, 8, 3), {"T": 8, "bs": 4}.get, pieces=True)
    (['T[2:8]', 'T[1:2]*bs', 'emb'], [])
    >>> view_names((4, 8, 5), ["T[2:8]", "T[1:2]*bs", "h"], (8, 4, 5), {"T": 8, "bs": 4}.get)
    (['T', 'bs', 'h'], [])
    """
    if 0 in src_shape or 0 in shape:  # an empty tensor: no element is moved, nothing to tell
        return [None] * len(shape), []
    size_of = _sizes(size_of)
    atoms = _atoms(src_shape, src, size_of)
    lo: list[int] = []  # each atom's flat-index stride; it spans [lo, lo * size)
    stride = 1
    for a in reversed(atoms):
        lo.append(stride)
        stride *= a.size
    lo.reverse()
    dst: list[tuple[int, int]] = []  # each result dim's [stride, stride * size)
    stride = 1
    for size in reversed(shape):
        dst.append((stride, stride * size))
        stride *= size
    dst.reverse()

    def varies(k: int, j: int) -> bool:  # does atom k's index change along result dim j?
        q, hi = dst[j]
        return hi > q and lo[k] % hi != 0 and q % (lo[k] * atoms[k].size) != 0

    out: Names = []
    scrambled: list[str] = []
    torn: set[int] = set()  # result dims that hold a part of bs (not all of it) beside a part of another named dim
    cut: set[int] = set()  # trusted named atoms some result dim cuts where no split can
    spans: list[list[int]] = []  # the atoms that vary along each result dim
    for j in range(len(shape)):
        ks = [k for k in range(len(atoms)) if varies(k, j)]
        spans.append(ks)
        parts: list[tuple[str, int, int] | str | None] = []
        for k in ks:
            a, top = atoms[k], lo[k] * atoms[k].size
            first, last = max(dst[j][0], lo[k]), min(dst[j][1], top)
            clean = first % lo[k] == 0 and last % lo[k] == 0 and (last // lo[k]) % (first // lo[k]) == 0 \
                and a.size % (last // lo[k]) == 0
            if not clean:
                if a.trusted:
                    cut.add(k)
                parts.append(None)
            elif a.label is None and pieces:
                parts.append(_Unnamed(last // first))  # (a part of) an unnamed dim: its size, a count
            elif first == lo[k] and last == top and (not a.trusted or "[" not in (a.label or "[")):
                parts.append(a.label)  # a whole dim (or factor), named as it is
            elif a.trusted and a.base:
                parts.append((a.base, a.p * (first // lo[k]), a.p * (last // lo[k])))
            else:
                parts.append(None)
        out.append(_join_parts(parts, size_of, pieces))
        bases = [p[0] if isinstance(p, tuple) else p for p in parts if p and not isinstance(p, _Unnamed)]
        part_of_bs = [k for k, p in enumerate(p for p in parts if p and not isinstance(p, _Unnamed))
                      if isinstance(p, tuple) and p[0] == "bs"]
        if part_of_bs and len(bases) > 1 and (part_of_bs[0] != 0 or any(b not in ("bs", "T") for b in bases)):
            # (T, bs=4, e).view(T/2, 4, 2e): a part of bs inside steps of T, and a part of it among the features;
            # whole sequences joined end to end, (bs, T).view(bs/2, 2T) (bs's part outside T), are not torn
            torn.add(j)
    for j, ks in enumerate(spans):  # a named dim cut (here or along another result dim) mixed here with another
        named = [a.base or a.label for a in (atoms[k] for k in ks) if a.base or a.label]
        if (len(named) > 1 or len(ks) > 1) and (any(k in cut for k in ks) or j in torn):  # relabelled, not moved
            scrambled += [n for n in named if n and n not in scrambled]  # (a named dim cut among unnamed ones too)
    return out, scrambled


def whole_dims(src_shape: Sequence[int], shape: Sequence[int]) -> list[bool]:
    """Whether each dim of a view's result is made of whole dims of its source (its ends lie where source
    dims end): ``(bs, nW, W, f)`` viewed as ``(bs*nW, W, f)`` cuts none; ``(bs, T, e)`` as ``(T, bs, e)`` does.

    >>> whole_dims((3, 4, 4, 2), (12, 4, 2)), whole_dims((4, 8, 3), (8, 4, 3))
    ([True, True, True], [False, False, True])
    """
    ends = {1}
    stride = 1
    for s in reversed(src_shape):
        stride *= s
        ends.add(stride)
    out: list[bool] = []
    stride = 1
    for s in reversed(shape):
        out.append(stride in ends and stride * s in ends)
        stride *= s
    return out[::-1]


def merges(src_shape: Sequence[int], shape: Sequence[int]) -> list[bool]:
    """Whether each dim of a view's result joins two or more dims (of size > 1) of its source.

    >>> merges((2, 3), (6, 1)), merges((6,), (2, 3)), merges((1, 4, 8), (4, 8))
    ([True, False], [False, False], [False, False])
    """
    spans: list[tuple[int, int]] = []  # each source dim's flat strides [lo, hi)
    stride = 1
    for s in reversed(src_shape):
        if s > 1:
            spans.append((stride, stride * s))
        stride *= s
    out: list[bool] = []
    stride = 1
    for s in reversed(shape):
        lo, hi = stride, stride * s
        out.append(s > 1 and sum(1 for a, b in spans if a < hi and lo < b) > 1)
        stride = hi
    return out[::-1]


def mixes_directions(names: Names) -> list[str]:
    """``["D", "h"]`` when a view's result (named with ``pieces=True``) joins the directions with a part
    of the hidden features: ``y.view(T, bs, -1, 2)`` of a bidirectional ``(T, bs, D*h)`` reads pairs
    of one direction's features as the two directions (the layout is ``(…, D, h)``).

    >>> view_names((5, 8), ["T", "D*h"], (5, 4, 2), {"T": 5, "D": 2, "h": 4}.get, pieces=True)
    (['T', 'D*h[2:4]', 'h[1:2]'], [])
    >>> mixes_directions(['T', 'D*h[2:4]', 'h[1:2]']), mixes_directions(['T', 'D', 'h'])
    (['D', 'h'], [])
    """
    for n in names:
        parts = (n or "").split("*")
        if len(parts) > 1 and any(p.split("[")[0] == "D" for p in parts) and any(p.startswith("h[") for p in parts):
            return ["D", "h"]
    return []


def read_as_time(pieces: str | None, name: str | None) -> bool:
    """Whether a dim a view made of (parts of) bs, or of a part of T beside another dim, is read as the time axis
    ``T`` by its next user.

    >>> read_as_time("bs*T[4:8]", "T"), read_as_time("T[2:8]", "T"), read_as_time("T[1:2]*bs", "bs")
    (True, False, False)
    >>> read_as_time("bs*3", "T"), read_as_time("bs", "T")  # bs with 3 rows of an unnamed dim: a view's doing
    (True, False)
    >>> read_as_time("2*T[2:8]", "T")  # (bs, heads=2, T, dk) viewed as (bs, T, heads*dk): heads among the steps
    True
    """
    if name != "T" or not pieces:
        return False
    parts = bases_of(pieces)
    factors = pieces.split("*")
    if len(factors) > 1 and any(f.startswith("T[") for f in factors):  # heads × part of T: steps mixed
        return True
    return "bs" in parts and ("[" in pieces or (len(parts) > 1 and all(p == "bs" or p.isdigit() for p in parts)))


def _text_size(text: str, size_of: Callable[[str], int | None]) -> int | None:
    """The size of one part of a dim name: ``"T[1:2]"`` 2, ``"7"`` 7, ``"bs"`` bs's known size."""
    if text.isdigit():
        return int(text)
    m = _PIECE.match(text)
    if m is not None:
        return int(m[3]) // int(m[2])
    return size_of(text) if is_simple_name(text) else None


Pick = tuple[str, int]
"""A slice's fixed index into a dim it took apart: ``("T[1:2]", 1)`` for ``x[1::2]`` of T (the inner
part of T at 1); a cat or stack of the picks 0, 1, … in order puts that dim back."""


def slice_names(shape: Sequence[int], names: Names, index: Any, out_shape: Sequence[int],
                size_of: Callable[[str], int | None]) -> tuple[dict[int, str], Pick | None]:
    """Names for the dims a slice takes apart (``x[j::r]`` of T: ``T[r:T]`` at inner index j; a block
    ``y[:, i*bs:(i+1)*bs]`` of ``2*bs``: ``bs`` at outer index i), by result dim, and the pick.

    >>> slice_names((8, 4), ["T", "bs"], slice(1, None, 2), (4, 4), {"T": 8, "bs": 4}.get)
    ({0: 'T[2:8]'}, ('T[1:2]', 1))
    >>> slice_names((4, 8), ["T[2:8]", "T[1:2]*bs"], (slice(None), slice(4, 8)), (4, 4), {"T": 8, "bs": 4}.get)
    ({1: 'bs'}, ('T[1:2]', 1))
    """
    items = index if isinstance(index, tuple) else (index,)
    if any(not (isinstance(i, (int, slice)) or i is None or i is Ellipsis) or isinstance(i, bool) for i in items):
        return {}, None
    used = sum(isinstance(i, (int, slice)) for i in items)
    if used > len(shape):
        return {}, None
    found: dict[int, str] = {}
    pick: Pick | None = None
    d = j = 0
    for i in items:
        if i is Ellipsis:
            j += len(shape) - used
            d += len(shape) - used
            continue
        if i is None:
            j += 1
            continue
        if isinstance(i, slice) and i != slice(None) and names[d] and j < len(out_shape):
            got = _slice_one(names[d] or "", int(shape[d]), i, int(out_shape[j]), size_of)
            if got is not None:
                found[j], p = got
                pick = p if pick is None else None  # one dim taken apart: more is not followed
                if pick is None:
                    return {}, None
        j += isinstance(i, slice)
        d += 1
    return found, pick


def _slice_one(name: str, size: int, sl: slice, out: int,
               size_of: Callable[[str], int | None]) -> tuple[str, Pick] | None:
    start, stop, step = sl.indices(size)
    parts = name.split("*")
    if step > 1:  # x[j::r] of one whole dim (or part of one): its outer part, at inner index j
        if len(parts) != 1 or size % step or out != size // step or start >= step:
            return None
        parsed = _parse(name, size_of)
        if parsed is None or parsed[2] // parsed[1] != size:
            return None
        base, p, q = parsed
        return piece_name(base, p * step, q, size_of), (piece_name(base, p, p * step, size_of), start)
    if step != 1 or len(parts) != 2 or out != stop - start or out <= 0:  # a block of the inner part of A*B
        return None
    outer, inner = _text_size(parts[0], size_of), _text_size(parts[1], size_of)
    if outer is None or inner is None or outer * inner != size or out != inner or start % inner:
        return None
    return parts[1], (parts[0], start // inner)


def joined_pick(picks: Sequence[Pick | None], size_of: Callable[[str], int | None]) -> str | None:
    """The dim a cat or stack of picks 0, 1, … n-1 of one dim (all of it, in order) puts back, else None.

    >>> joined_pick([("T[1:2]", 0), ("T[1:2]", 1)], {"T": 8}.get), joined_pick([("2", 1), ("2", 0)], {}.get)
    ('T[1:2]', None)
    """
    if not picks or any(p is None for p in picks):
        return None
    what = picks[0][0]  # type: ignore[index]
    if any(p[0] != what or p[1] != k for k, p in enumerate(picks)):  # type: ignore[index]
        return None
    return what if _text_size(what, size_of) == len(picks) else None


class _Unnamed(str):
    """The size of (a part of) an unnamed dim, as a count: named only next to a named part."""


def _join_parts(parts: list[tuple[str, int, int] | str | None], size_of: Callable[[str], int | None],
                pieces: bool) -> str | None:
    """One result dim's name from its parts, outer first: adjacent parts of one dim joined back."""
    if not parts or any(p is None for p in parts) or all(isinstance(p, _Unnamed) for p in parts):
        return None  # a dim made only of unnamed ones stays unnamed
    merged: list[tuple[str, int, int] | str] = []
    for part in parts:
        prev = merged[-1] if merged else None
        if isinstance(part, tuple) and isinstance(prev, tuple) and prev[0] == part[0] and prev[1] == part[2]:
            merged[-1] = (part[0], part[1], prev[2])  # the outer part then the inner one: one range
        else:
            merged.append(part)  # type: ignore[arg-type]
    names = [piece_name(*m, size_of) if isinstance(m, tuple) else m for m in merged]
    if not pieces and any("[" in n for n in names):
        return None
    return "*".join(names)


def prod(sizes: Iterable[int]) -> int:
    """The product of sizes (1 for none).

    >>> prod([2, 3]), prod([])
    (6, 1)
    """
    p = 1
    for s in sizes:
        p *= s
    return p


def copied_names(base: str, src_shape: tuple[int, ...], names: Names, args: tuple, kwargs: dict,
                 shape: tuple[int, ...]) -> Names | None:
    """Names of a copy op's result, the copies counted in memory order: ``expand`` of a size-1 dim to
    3 copies is ``"3"``; ``repeat`` tiles (``"3*bs"``: the copy outer); ``repeat_interleave`` repeats
    each row (``"bs*3"``), so a beam's ``bs*k`` keeps its order (``view(bs, k, h)`` gives them back).

    >>> copied_names("repeat", (1, 4, 6), [None, "bs", "h"], (None, 7, 1, 1), {}, (7, 4, 6))  # h_n[-1:] T times
    ['7', 'bs', 'h']
    """
    src = list(src_shape)
    new = len(shape) - len(src)
    if new < 0:
        return None
    if base == "repeat_interleave":
        reps, dim = (args[1] if len(args) > 1 else kwargs.get("repeats")), kwargs.get("dim", args[2] if len(args) > 2
                                                                                      else None)
        if not isinstance(reps, int) or not isinstance(dim, int) or new:
            return None
        d = dim % len(src)
        return [f"{n}*{reps}" if k == d and n and reps > 1 else (n if k != d or reps == 1 else None)
                for k, n in enumerate(names)]
    out: Names = [str(s) if s > 1 else None for s in shape[:new]]  # new leading dims: copies
    for n, s, t in zip(names, src, shape[new:]):
        if s == t:
            out.append(n)
        elif s == 1:
            out.append(str(t))  # a size-1 dim made t copies
        elif base == "repeat" and t % s == 0 and n:
            out.append(f"{t // s}*{n}")  # tiled: the copy index is outer
        else:
            out.append(None)
    return out


def broadcasts(shape: tuple[int, ...], to: tuple[int, ...]) -> bool:
    """Does ``shape`` broadcast to ``to`` (an elementwise op's operand: a locked-dropout mask ``(1, bs, h)``)?

    >>> broadcasts((1, 4, 8), (7, 4, 8)), broadcasts((4, 8), (7, 4, 8)), broadcasts((7, 1), (1, 7))
    (True, True, False)
    """
    return len(shape) <= len(to) and all(s in (1, t) for s, t in zip(reversed(shape), reversed(to)))


def pads(args: tuple, out: torch.Tensor, batch_first: bool) -> bool:
    """Does ``pad_packed_sequence`` pad any sequence: are their lengths unequal, or ``total_length`` longer? Read
    from ``batch_sizes`` (a CPU tensor: where it is not one, say yes).

    >>> pads((None, torch.tensor([3, 3, 3])), torch.zeros(3, 3, 2), False)  # 3 steps of 3 sequences
    False
    >>> pads((None, torch.tensor([3, 2])), torch.zeros(2, 3, 2), False)
    True
    """
    bsz = args[1] if len(args) > 1 else None
    if not isinstance(bsz, torch.Tensor) or bsz.device.type != "cpu" or bsz.dim() != 1 or not bsz.numel():
        return True
    steps = out.shape[1 if batch_first else 0]
    return int(bsz[0]) != int(bsz[-1]) or steps != bsz.numel()
