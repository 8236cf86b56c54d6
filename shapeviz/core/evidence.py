"""Evidence from declared sizes: does a call's layout contradict what ``sv.dims``/``inputs=`` declared?

>>> decl = {"bs": 4, "T": 7}
>>> layer_swapped(decl, bs=7, T=4)  # a (bs, T, emb) tensor read as (T, bs, emb): both dims line up
True
>>> layer_swapped(decl, bs=7, T=4, state_bs=7)  # the call's own h_0 has batch 7: it contradicts the alarm
False
>>> layer_suspect({"bs": 4}, bs=8, T=4), layer_swapped({"bs": 4}, bs=8, T=4)  # one size matches: no evidence
(True, False)

Two kinds of predicate. The ``*_suspect`` ones are the fast path's cheap pre-filter: ``True`` whenever a
declared size *could* name a layout mistake, so the call goes to the diagnosis. The others decide, and
need evidence that holds together (DESIGN.md, "Alarms: evidence only"):

* every declared dim the mistake involves lines up (a swap needs both ``bs`` and ``T`` to line up when
  both are declared);
* the call's own state agrees (``h_0``'s batch is the batch the mistake says; one that reads the batch as
  the layer does contradicts it);
* without a state, matching sizes are a coincidence whenever the layer's batch can be a product of the
  declared one (``bs*skip``, ``rate*bs``, ``bs*k``: a multiple of ``bs``), so only a batch that no such
  merge makes is evidence; a size of 1 (a batch of one, one step) is evidence of nothing. Declared sizes
  never call a 2-D input ``(bs, emb)``: an unbatched sequence may have any length. With ``ops=True`` the
  dims' provenance decides before any of this.

Plain int compares: no allocation.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["bases_of", "cell_suspect", "cell_swapped", "layer_confirmed", "layer_suspect", "layer_swapped",
           "packed_swapped", "provenance_speaks", "provenance_swapped", "summary_of_steps"]


def provenance_swapped(names: Sequence[str | None], t_axis: int, bs_axis: int) -> bool:
    """Do a layer input's dims, named by where they came from (``ops=True``), say it is laid out swapped: its
    time axis is the model input's bs, and its batch axis is not made of bs (T, a time named by the user such as
    ``S``, a count, or unnamed)? Sizes play no part.

    >>> provenance_swapped(("bs", "T", "emb"), 0, 1), provenance_swapped(("T", "bs", "emb"), 0, 1)
    (True, False)
    >>> provenance_swapped(("7", "bs", "h"), 1, 0)  # h_n repeated 7 times, read batch-first: 7 copies as the batch
    True
    >>> provenance_swapped(("bs", "S", "emb"), 0, 1), provenance_swapped(("bs", "bs[1:2]", "emb"), 0, 1)
    (True, False)
    """
    at_bs = names[bs_axis]
    return names[t_axis] == "bs" and (at_bs is None or "bs" not in bases_of(at_bs))


def bases_of(name: str) -> set[str]:
    """The names a provenance name is made of: ``"bs*S"`` of bs and S, ``"bs[2:4]"`` of bs, ``"T-1"`` (a slice
    ``x[:, 1:]``) of T.

    >>> sorted(bases_of("T[1:2]*bs")), sorted(bases_of("T-1*bs"))
    (['T', 'bs'], ['T', 'bs'])
    """
    return {p.split("[")[0].split("-")[0] for p in name.split("*")}


def provenance_speaks(names: Sequence[str | None], *axes: int) -> bool:
    """Does provenance say what any of these dims is in time or batch terms (a name made of ``T`` or ``bs``,
    ``bs*3``, ``T[2:4]``)? A count of copies (``"7"``) or a feature name says nothing about the layout.

    >>> provenance_speaks(("7", "bs", "h"), 0, 1), provenance_speaks(("7", None, "h"), 0, 1)
    (True, False)
    """
    return any(names[a] is not None and bool(bases_of(names[a]) & {"T", "bs"}) for a in axes)


def summary_of_steps(names: Sequence[str | None]) -> bool:
    """Are a tensor's features a recurrent layer's (``h``, ``D*h``, ``proj``: its state, its output, a pooling of
    them)? Such a ``(bs, h)`` sums up each sequence, and a model may read its rows as the steps of a sequence one
    level up (a document's sentence vectors, fed unbatched to a sentence GRU): its dim 0 being the model input's
    bs is then no evidence that a batch was read as time.

    >>> summary_of_steps(("bs", "h")), summary_of_steps(("bs", "D*h")), summary_of_steps(("bs", "emb"))
    (True, True, False)
    """
    last = names[-1] if names else None
    return last is not None and bool(bases_of(last) & {"h", "proj"})


def layer_suspect(decl: dict[str, int], bs: int, T: int) -> bool:
    """A declared size could say a layer's batched input is swapped (the fast path's pre-filter).

    >>> layer_suspect({"bs": 4, "T": 7}, bs=4, T=7)
    False
    """
    dbs = decl.get("bs")
    if dbs is not None:
        return bs != dbs and dbs == T
    dT = decl.get("T")
    return dT is not None and dT != T and bs == dT


def layer_swapped(decl: dict[str, int], bs: int, T: int, state_bs: int | None = None) -> bool:
    """A layer's batched input carries ``bs`` and ``T`` in each other's place (``batch_first_swap``).

    ``bs`` and ``T`` are the sizes as the layer reads them; ``state_bs`` is the batch of the call's own
    ``h_0`` (None when no state was passed).

    >>> layer_swapped({"bs": 4, "T": 8}, bs=8, T=4, state_bs=8)  # a dilated layer: (T/rate, rate*bs)
    False
    >>> layer_swapped({"bs": 4}, bs=9, T=4, state_bs=4)  # h_0 agrees with the declared bs
    True
    >>> layer_swapped({"bs": 4}, bs=12, T=4), layer_swapped({"bs": 4}, bs=10, T=4)  # 12 may be bs*3
    (False, True)
    >>> layer_swapped({"bs": 2, "T": 6}, bs=6, T=2)  # a skip-GRU's (pt, bs*skip): sizes alone prove nothing
    False
    >>> layer_swapped({"bs": 4, "T": 1}, bs=1, T=4)  # 4 utterances of one dialogue, or 4 one-step sequences
    False
    """
    if not layer_suspect(decl, bs, T) or 1 in (bs, T):  # a size of 1 proves nothing
        return False
    if state_bs is not None and state_bs == bs:
        return False  # the call's own state reads the batch as the layer does
    dbs, dT = decl.get("bs"), decl.get("T")
    if dbs is not None and dT is not None and not (dbs == T and bs == dT):
        return False  # both declared: both must line up
    if state_bs is not None:  # the call's own state must back the swap up (a size of 1 backs up nothing:
        return state_bs == T != 1  # a one-step decoder's T=1 and a batch of one match by nature)
    # no state: the layer's batch can be a product of the declared one (bs*skip, rate*bs, bs*k) whose
    # length equals bs by chance (and, T = skip*bs, the product equals T); only a batch that no such merge
    # of bs makes is evidence
    return dbs is not None and bs % dbs != 0


def layer_confirmed(decl: dict[str, int], bs: int, T: int) -> bool:
    """The declared sizes read a layer's batched input as the layer does: the declared ``bs`` is where it reads
    its batch, or the declared ``T`` where it reads time. That contradicts any swap, whatever the call's state
    says (a stale ``h_0`` of the full batch, whose size equals T by chance, is a ``batch_mismatch``).

    >>> layer_confirmed({"bs": 2, "T": 7}, bs=2, T=7), layer_confirmed({"bs": 7, "T": 2}, bs=2, T=7)
    (True, False)
    >>> layer_confirmed({"bs": 4, "T": 4}, bs=4, T=4)  # equal sizes: they say nothing about the layout
    False
    """
    return bs != T and (decl.get("bs") == bs or decl.get("T") == T)


def cell_suspect(decl: dict[str, int], first: int) -> bool:
    """A declared size could say a cell's step ``(first, emb)`` is ``(T, emb)`` (the fast path's pre-filter).

    >>> cell_suspect({"bs": 2, "T": 5}, 5), cell_suspect({"bs": 2, "T": 5}, 2)
    (True, False)
    """
    dbs, dT = decl.get("bs"), decl.get("T")
    return dbs is not None and dT is not None and first != dbs and first == dT


def cell_swapped(decl: dict[str, int], first: int, state_bs: int | None) -> bool:
    """A cell's step ``(first, emb)`` is ``(T, emb)``: the loop iterates the batch dim of a batch-first tensor.

    A step shows one dim only, so its size matching the declared ``T`` is a single coincidence (a beam of
    ``bs*k`` rows, say); the call's own state must have the declared batch as well.

    >>> cell_swapped({"bs": 2, "T": 5}, 5, state_bs=2), cell_swapped({"bs": 2, "T": 5}, 5, state_bs=None)
    (True, False)
    """
    return cell_suspect(decl, first) and state_bs is not None and state_bs == decl["bs"]


def packed_swapped(decl: dict[str, int], bs: int, steps: int, state_bs: int | None = None) -> bool:
    """A batch-first padded tensor was packed without ``batch_first=True``.

    >>> packed_swapped({"bs": 2, "T": 5}, bs=5, steps=2), packed_swapped({"bs": 2, "T": 5}, 5, 2, state_bs=5)
    (True, False)
    """
    dbs, dT = decl.get("bs"), decl.get("T")
    return (dbs is not None and dT is not None and dbs != dT and bs == dT and steps == dbs
            and (state_bs is None or state_bs == dbs))
