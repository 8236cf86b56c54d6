"""How a module's results are named from its inputs, by what the module provably does: shape-keeping modules
(dropout, activations, norms) keep every name, ``Linear`` the leading dims, ``Embedding`` the index dims, a
conv or pooling over ``(bs, C, …)`` the batch and each spatial dim whose length it leaves (:class:`Sliding`).

>>> module_how("Dropout", [], "module drop").kind, module_how("Conv1d", [], "module conv").kind
(<Naming.LIKE: 'like'>, <Naming.RULE: 'rule'>)
"""

from __future__ import annotations

from collections.abc import Sequence

from shapeviz.tracing.naming import How, Names, Naming, OpView
from shapeviz.tracing.records import TensorInfo

__all__ = ["BATCHED_MODULES", "SHAPE_PRESERVING_MODULES", "Sliding", "attention", "module_how"]


SHAPE_PRESERVING_MODULES = frozenset({
    "Identity", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Tanh", "Sigmoid",
    "Hardtanh", "Hardsigmoid", "Hardswish", "Softplus", "Softsign", "Tanhshrink", "LogSigmoid", "Softmax",
    "LogSoftmax", "LayerNorm", "RMSNorm"})
"""Modules whose result has each dim of their input, in place: their results keep the input's names."""


def module_how(type_name: str, inputs: Sequence[TensorInfo], origin: str) -> How:
    """How a module call's results are named from its inputs, by what the module provably does.

    >>> module_how("Dropout", [], "module drop").kind, module_how("Linear", [], "module fc").kind
    (<Naming.LIKE: 'like'>, <Naming.RULE: 'rule'>)
    >>> module_how("Tagger", [], "module tagger").kind  # a model of yours: only a guess
    <Naming.LOOKS_LIKE: 'looks like'>
    """
    if type_name in SHAPE_PRESERVING_MODULES:
        return How.like(inputs, origin)
    if type_name == "Linear":  # acts on the last dim only: the leading dims keep their names
        return How.by_rule(_leading_dims, inputs, origin)
    if type_name == "Embedding":  # looks up each index: the index dims keep their names, emb is added
        return How.by_rule(_index_dims, inputs, origin)
    if type_name == "MultiheadAttention":  # its output (the weights are not named by it: see ModuleCalls)
        return How.by_rule(attention, inputs, origin)
    rule = BATCHED_MODULES.get(type_name)
    if rule is not None:  # a batched conv, pooling or norm: dim 0 is its input's batch
        return How.by_rule(rule, inputs, origin)
    return tuple.__new__(How, (Naming.LOOKS_LIKE, (), None, None, inputs, origin))


class _BatchDim:
    """The rule of a module whose batched result (``ndim`` dims; 0: any) keeps its input's dim 0, the batch."""

    __slots__ = ("ndim",)

    def __init__(self, ndim: int) -> None:
        self.ndim = ndim

    def __call__(self, op: OpView) -> Names | None:
        nd = len(op.shape)
        if not op.ins or len(op.ins[0].shape) != nd or (nd != self.ndim if self.ndim else nd < 2):
            return None
        return [op.names(0)[0], *[None] * (nd - 1)]


class Sliding:
    """A conv or pooling over a batched ``(bs, C, *spatial)`` input with ``n`` spatial dims: the batch stays, a
    conv's channels are new (a pooling's stay), and a spatial dim keeps its name where its length is unchanged (a
    stride-1 "same" conv over ``T`` is still ``T``; a strided one is shorter, and no longer T). An unbatched
    ``(C, *spatial)`` input has no batch to keep: no names."""

    __slots__ = ("n", "pool")

    def __init__(self, n: int, pool: bool) -> None:
        self.n, self.pool = n, pool

    def __call__(self, op: OpView) -> Names | None:
        src, shape = op.names(0), op.ins[0].shape
        if len(shape) != self.n + 2 or len(op.shape) != len(shape):
            return None
        channels = src[1] if self.pool and shape[1] == op.shape[1] else None
        return [src[0], channels, *(n if a == b else None for n, a, b in zip(src[2:], shape[2:], op.shape[2:]))]


BATCHED_MODULES: dict[str, _BatchDim | Sliding] = {
    **{f"{kind}{n}d": Sliding(n, "Pool" in kind) for kind in ("Conv", "ConvTranspose", "MaxPool", "AvgPool",
                                                              "AdaptiveMaxPool", "AdaptiveAvgPool") for n in (1, 2, 3)},
    **{f"InstanceNorm{n}d": _BatchDim(n + 2) for n in (1, 2, 3)},
    **{f"BatchNorm{n}d": _BatchDim(0) for n in (1, 2, 3)}}
"""Modules whose batched result keeps its input's dim 0 (the batch), whatever they do to the other dims; an
unbatched conv's dim 0 is its channels, which it changes."""


def _index_dims(op: OpView) -> Names | None:
    if not op.ins or len(op.ins[0].shape) + 1 != len(op.shape):
        return None
    return [*op.names(0), None]


def attention(op: OpView) -> Names | None:
    """An attention's result (``F.scaled_dot_product_attention``, ``nn.MultiheadAttention``'s output): one row per
    query, in the query's layout: the query's leading dims keep their names; the features are the values'
    (projected), unnamed."""
    if not op.ins or op.ins[0].shape[:-1] != op.shape[:-1] or len(op.ins[0].shape) != len(op.shape):
        return None
    return [*op.names(0)[:-1], None]


def _leading_dims(op: OpView) -> Names | None:
    if not op.ins or len(op.ins[0].shape) != len(op.shape):
        return None
    return [*op.names(0)[:-1], None]
