"""Evidence from declared sizes: does a call's layout contradict what ``sv.dims``/``inputs=`` declared?

>>> decl = {"bs": 4, "T": 7}
>>> layer_swapped(decl, bs=7, T=4)  # a (bs, T, emb) tensor read as (T, bs, emb)
True
>>> layer_swapped(decl, bs=4, T=7), unbatched_ambiguous(decl, 4), cell_swapped(decl, 7)
(False, True, True)

Each predicate takes the declared sizes and the sizes a call has *as the module reads them*;
``True`` means the declaration names the mistake. The fast check and the diagnosis both ask
these, so the evidence rule is stated once. Plain int compares: no allocation.
"""

from __future__ import annotations

__all__ = ["cell_swapped", "layer_swapped", "packed_swapped", "unbatched_ambiguous"]


def layer_swapped(decl: dict[str, int], bs: int, T: int) -> bool:
    """A layer's batched input carries ``bs`` and ``T`` in each other's place (``batch_first_swap``)."""
    dbs = decl.get("bs")
    if dbs is not None:
        return bs != dbs and dbs == T
    dT = decl.get("T")
    return dT is not None and dT != T and bs == dT


def cell_swapped(decl: dict[str, int], first: int) -> bool:
    """A cell's step ``(first, emb)`` is ``(T, emb)``: the loop iterates the batch dim of a batch-first tensor.

    >>> cell_swapped({"bs": 2, "T": 5}, 2)
    False
    """
    dbs, dT = decl.get("bs"), decl.get("T")
    return dbs is not None and dT is not None and first != dbs and first == dT


def packed_swapped(decl: dict[str, int], bs: int, steps: int) -> bool:
    """A batch-first padded tensor was packed without ``batch_first=True``.

    >>> packed_swapped({"bs": 2, "T": 5}, bs=5, steps=2)
    True
    """
    dbs, dT = decl.get("bs"), decl.get("T")
    return dbs is not None and dT is not None and dbs != dT and bs == dT and steps == dbs


def unbatched_ambiguous(decl: dict[str, int], first: int) -> bool:
    """A 2-D layer input read as unbatched ``(T, emb)`` is ``(bs, emb)``: its first dim is the declared bs.

    >>> unbatched_ambiguous({"bs": 3}, 3), unbatched_ambiguous({"bs": 3, "T": 3}, 3)
    (True, False)
    """
    dbs = decl.get("bs")
    return dbs is not None and first == dbs and decl.get("T", -1) != first
