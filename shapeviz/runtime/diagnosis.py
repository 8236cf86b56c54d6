"""The slow path: which mistake is this call, and how is it fixed? Runs only after a check failed.

>>> import torch, torch.nn as nn
>>> from shapeviz.core.model import conventions
>>> gru = nn.GRU(10, 20)
>>> err = diagnose(gru, conventions(gru), torch.randn(5, 3, 10), (torch.zeros(1, 3, 20),), None, None)
>>> err.code, err.hints[0]
('state_type', 'gru(x, h0)  # a GRU takes one state tensor, not a tuple')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from shapeviz._errors import ShapeError
from shapeviz.core.callfit import call_rule, dtype_fits, packed_batch, state_batch, state_parts, state_shapes
from shapeviz.core.dimensions import declared
from shapeviz.core.evidence import (
    cell_swapped,
    layer_confirmed,
    layer_swapped,
    packed_swapped,
    provenance_speaks,
    provenance_swapped,
    summary_of_steps,
)
from shapeviz.core.model import Conventions, module_weight
from shapeviz.runtime.rootcall import both_ways
from shapeviz.tracing.flow import known_names, one_step
from shapeviz.tracing.flowchecks import reordered


class _Ctx:
    """What the diagnosis knows about one call: conventions, sizes found so far, declared sizes."""

    def __init__(self, module: torch.nn.Module, conv: Conventions, decl: dict[str, int] | None,
                 path: str | None) -> None:
        self.module = module
        self.conv = conv
        self.rule = call_rule(conv)  # what the call was expected to be: the one rule's (core.callfit)
        self.emb: int = self.rule.inputs[0][-1]  # type: ignore[assignment]
        self.decl = decl or {}
        self.where = f"{path}: {conv.label}" if path else conv.label
        self.var = conv.kind.lower() if not conv.cell else "cell"
        self.T: int | None = None
        self.bs: int | None = None
        self.batched = True
        self.packed = False
        self.extra: dict[str, int | None] = {}

    def named(self, arg: str) -> str:
        return self.conv.named(arg, self.T, self.bs, batched=self.batched, packed=self.packed,
                               extra=self.extra, declared=self.decl)

    def err(self, code: str, arg: str, actual: Any, hints: list[str], detail: str = "",
            expected: str | None = None) -> ShapeError:
        if isinstance(actual, Tensor):
            actual = tuple(actual.shape)
        elif not isinstance(actual, (tuple, str)) and actual is not None:
            actual = type(actual).__name__
        context = _rank_context()
        if self.decl:
            context.append("declared: " + ", ".join(f"{k}={v}" for k, v in self.decl.items()))
        return ShapeError(module=self.where, argument=arg, expected=expected or self.named(arg),
                          actual=actual, code=code, hints=hints, detail=detail, context=context)


def one_sequence(x: Tensor, bs_axis: int, state_bs: int | None) -> bool:
    """A batch of one, which no state contradicts: ``x.view(len(words), 1, -1)``, the items of an outer batch
    read as one sequence (a hierarchical model, a document at a time). Where its time axis came from is then
    the model's design, not a layout's mistake, unless its items are one step of each sequence (``emb(src[:, 0])``
    read as a sequence of bs steps).

    >>> one_sequence(torch.zeros(5, 1, 8), 1, None), one_sequence(torch.zeros(5, 1, 8), 1, 5)
    (True, False)
    """
    return x.shape[bs_axis] == 1 and state_bs in (None, 1) and not one_step(x)


def _swapped_by_provenance(x: Tensor, names: Sequence[str | None], t_axis: int, bs_axis: int,
                           state_bs: int | None) -> bool:
    """Provenance says the layout is swapped (:func:`provenance_swapped`), and the input is no batch of one read as
    a sequence (:func:`one_sequence`) nor one step of one sequence, ``(1, 1, emb)``, the same either way."""
    return provenance_swapped(names, t_axis, bs_axis) and x.shape[t_axis] != 1 \
        and not one_sequence(x, bs_axis, state_bs)


def swap_evidence(x: Tensor, t_axis: int, bs_axis: int, T: int | None, bs: int | None, decl: dict[str, int],
                  state_bs: int | None) -> str | None:
    """The evidence that a layer's batched input ``x`` (``T`` and ``bs`` as the layer reads them, at ``t_axis`` and
    ``bs_axis``) is laid out swapped, as the message says it, or None: with ``ops=True`` the dims' provenance
    decides and no size outweighs it; else the declared sizes as a whole, then the call's own state (a size of 1
    matches by nature; declared sizes that read the input as the layer does contradict the state).

    >>> swap_evidence(torch.zeros(4, 7, 8), 0, 1, T=4, bs=7, decl={"bs": 4, "T": 7}, state_bs=None)
    'declared sizes bs=4, T=7'
    >>> swap_evidence(torch.zeros(2, 7, 8), 1, 0, T=7, bs=2, decl={"bs": 2, "T": 7}, state_bs=7)  # a stale h_0
    """
    names = known_names(x)  # ops=True: where each dim came from decides, not the sizes
    if names is not None and provenance_speaks(names, t_axis, bs_axis):
        return f"this input's dim {t_axis} comes from the model input's bs" \
            if _swapped_by_provenance(x, names, t_axis, bs_axis, state_bs) else None
    if T is None or bs is None:
        return None
    if decl and layer_swapped(decl, bs, T, state_bs) and not both_ways(bs, T) \
            and not (one_sequence(x, bs_axis, state_bs) and decl.get("T") != 1):
        return "declared sizes " + ", ".join(f"{k}={v}" for k, v in decl.items() if k in ("bs", "T"))
    if state_bs is not None and state_bs == T != 1 and bs != T and not (decl and layer_confirmed(decl, bs, T)) \
            and not both_ways(bs, T):  # a model given (6, 4) and (4, 6): h_0 may be the other input's (stale)
        return f"h_0 has batch {state_bs}, which is this input's dim {t_axis}"
    return None


def provenance_check(module: torch.nn.Module, conv: Conventions, args: tuple, names: Sequence[str | None],
                     path_of: Callable[[torch.nn.Module], str | None]) -> None:
    """``ops=True``'s check of a layer call before it runs: an input whose time axis came from the model input's
    bs (an untransposed ``(bs, T, emb)``) is diagnosed, whatever its sizes (bs == T too, or nothing declared),
    where the check of the sizes alone lets it pass. Given to the flow (:mod:`shapeviz.tracing.flow`).

    >>> import torch, torch.nn as nn
    >>> from shapeviz.core.model import conventions
    >>> from shapeviz.tracing.flow import flow
    >>> from shapeviz.tracing.naming import name
    >>> gru = nn.GRU(8, 6)
    >>> with flow():  # the names come from the flow: here sv.name's, (bs=4, T=4, emb=8) into a seq-first layer
    ...     x = name(torch.zeros(4, 4, 8), "bs T emb")
    ...     provenance_check(gru, conventions(gru), (x,), ("bs", "T", "emb"), lambda m: "rnn")
    Traceback (most recent call last):
    ...
    shapeviz.ShapeError: [batch_first_swap] rnn: GRU(8, 6): argument `input`
    ...
    """
    x, lay = args[0], conv.layout
    hx = args[1] if len(args) > 1 else None
    _state_order(module, conv, x, hx, names, path_of)
    if conv.cell or lay.t_axis is None:  # a step: its batch dim came from the model input's T
        if conv.declaration is None and x.dim() == 2 and names[0] == "T":
            c = _Ctx(module, conv, declared(), path_of(module))
            raise c.err("batch_first_swap", "input", x, _ITERATE_TIME,
                        f"this step is (T={x.shape[0]}, emb): its dim 0 comes from the model input's T, so the loop "
                        "iterates the batch dim of a batch-first tensor")
        return
    batched = lay.is_batched(x.dim())
    if not ((batched is True and _swapped_by_provenance(x, names, lay.t_axis, lay.bs_axis,
                                                         state_batch(call_rule(conv), hx)))
            or (batched is False and conv.declaration is None and names[0] == "bs" and x.shape[0] != 1)):  # (bs, emb)
        return
    if conv.declaration is None:
        err = diagnose(module, conv, x, hx, declared(), path_of(module))
    else:
        from shapeviz.runtime.declared_diagnosis import diagnose_declared

        err = diagnose_declared(module, conv, x, hx, declared(), path_of(module))
    if err is not None:
        raise err


def _state_order(module: torch.nn.Module, conv: Conventions, x: Tensor, hx: Any, names: Sequence[str | None],
                 path_of: Callable[[torch.nn.Module], str | None]) -> None:
    """A state whose batch holds the input's rows in another order: ``h.repeat(1, k, 1)`` (copies outer, ``k*bs``)
    beside an input made with ``repeat_interleave(k, 0)`` (``bs*k``): every row starts from another row's state."""
    h = hx[0] if isinstance(hx, (tuple, list)) and hx else hx
    batched = conv.layout.is_batched(x.dim()) is True
    if not isinstance(h, Tensor) or not batched or conv.layout.bs_axis is None:
        return
    axis = 0 if conv.cell else 1
    state = known_names(h)
    ours, theirs = names[conv.layout.bs_axis], state[axis] if state is not None and h.dim() > axis else None
    if not reordered(ours, theirs):
        return
    c = _Ctx(module, conv, declared(), path_of(module))
    k = next((p for p in ours.split("*") if p.isdigit()), "k")
    fix = f"repeat_interleave({k}, dim={axis})" if ours.endswith(k) else f"repeat({'1, ' * axis}{k}, 1)"
    raise c.err("batch_mismatch", "h_0", h, [f"h = h.{fix}  # the state's rows in the input's order, {ours}"],
                f"its batch is {theirs} but the input's is {ours}: the same rows in another order, so each row "
                "starts from another row's state (it runs, silently wrong)", expected=f"batch {ours}")


def batch_said(c: Any) -> str:
    """The input's batch in a ``batch_mismatch`` message: ``"bs = 3"``, or ``"batch is 3"`` where the declared bs
    is another size (a merged ``bs*k`` or a smaller group is not the declared bs)."""
    return f"batch is {c.bs}" if c.decl.get("bs", c.bs) != c.bs else f"bs = {c.bs}"


def time_as_batch(c: Any, got: int) -> list[str]:
    """The last hint for a state whose batch ``got`` is the declared T (not the declared bs): the layer that made
    it may have read a ``(bs, T, …)`` input as ``(T, bs, …)``, which cutting the state to the batch would hide."""
    decl = c.decl or {}
    if decl.get("T") != got or decl.get("bs") in (None, got):
        return []
    return [f"or, as its batch {got} is the declared T: the layer that made this state may have read (bs, T, …) "
            "as (T, bs, …) (check its batch_first, or its input's transpose)"]


def _rank_context() -> list[str]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return [f"rank {dist.get_rank()} of {dist.get_world_size()} (torch.distributed)"]
    return []


def diagnose(module: torch.nn.Module, conv: Conventions, x: Any, hx: Any,
             decl: dict[str, int] | None, path: str | None) -> ShapeError | None:
    """The :class:`ShapeError` for a call the fast path rejected (None if it finds no fault).

    >>> import torch, torch.nn as nn
    >>> from shapeviz.core.model import conventions
    >>> rnn = nn.RNN(10, 20)  # seq-first, given a (bs=4, T=7, emb) input and a bs=4 state
    >>> err = diagnose(rnn, conventions(rnn), torch.randn(4, 7, 10), torch.zeros(1, 4, 20), None, None)
    >>> err.code, err.detail.split("(evidence: ")[1]
    ('batch_first_swap', "h_0 has batch 4, which is this input's dim 0)")
    """
    c = _Ctx(module, conv, decl, path)
    if isinstance(x, Tensor) and x.is_nested:  # sequences of other lengths: no shape to read, and torch takes none
        fix = (["x = torch.nested.to_padded_tensor(x, 0.0)  # (bs, T_max, emb): then one step a call, x[:, t]"]
               if conv.cell else ["x = pack_sequence(list(x.unbind()), enforce_sorted=False)  # a PackedSequence",
                                  "or x = torch.nested.to_padded_tensor(x, 0.0)  # (bs, T_max, emb): batch_first"])
        return c.err("input_ndim", "input", "nested tensor", fix,
                     f"a nested tensor: torch's {conv.family} {'cells' if conv.cell else 'layers'} take a "
                     f"{'(bs, emb) tensor' if conv.cell else 'padded tensor or a PackedSequence'}")
    if conv.cell:
        return _cell(c, x, hx)
    return _layer(c, x, hx)


# ------------------------------------------------------------------------------------------- input
def _dtype_device(c: _Ctx, arg: str, t: Tensor, ref: Tensor | None, ref_name: str,
                  dtype: bool = True) -> ShapeError | None:
    if ref is None:  # a declared layer without parameters: nothing to agree with
        return None
    if dtype and not dtype_fits(t.dtype, ref.dtype, t.device):
        if not t.dtype.is_floating_point and not t.dtype.is_complex and arg == "input":
            emb = c.emb
            if c.rule.bs_axis == 0:  # batch-major: (bs, T) tokens embed without a transpose
                hint = [f"x = embedding(tokens)  # (bs, T) tokens -> (bs, T, emb={emb})",
                        f"x = F.one_hot(tokens, num_classes={emb}).float()  # -> (bs, T, vocab={emb})"]
            else:
                hint = [f"x = embedding(tokens.T)  # (bs, T) tokens -> (T, bs, emb={emb})",
                        f"x = F.one_hot(tokens.T, num_classes={emb}).float()  # -> (T, bs, vocab={emb})"]
            detail = f"got integer {t.dtype} data: token ids must be embedded or one-hot encoded first"
        else:
            hint = [f"{_short(arg)} = {_short(arg)}.to({ref.dtype})  # or {c.var}.to({t.dtype})"]
            detail = f"dtype {t.dtype} does not match the dtype of the {ref_name}, {ref.dtype}"
        return c.err("dtype", arg, t, hint, detail, expected=f"{c.named(arg)} of dtype {ref.dtype}")
    if t.device != ref.device:
        return c.err("device", arg, t, [f"{_short(arg)} = {_short(arg)}.to({str(ref.device)!r})"],
                     f"on {t.device}, but the {ref_name} {'are' if ref_name.endswith('s') else 'is'} on {ref.device}",
                     expected=f"{c.named(arg)} on {ref.device}")
    return None


def _no_feature_dim(c: _Ctx, sh: tuple[int, ...]) -> tuple[list[str], str] | None:
    """A 2-D input that the declared sizes show is the layer's ``(bs, T)`` (or ``(T, bs)``) with no feature dim:
    the hints that add one, and what the message adds; None otherwise (a size match alone is no evidence: both
    bs and T must be declared, and differ)."""
    lay, decl = c.conv.layout, c.decl or {}
    bs, T = decl.get("bs"), decl.get("T")
    if lay.cell or lay.is_batched(len(sh)) is not False or bs is None or T is None or bs == T:
        return None
    order = (bs, T) if lay.bs_axis == 0 else (T, bs)
    if sh != order:
        return None
    shown = "(bs, T)" if lay.bs_axis == 0 else "(T, bs)"
    emb = c.emb
    if emb == 1:
        fix = [f"x = x.unsqueeze(-1)  # {shown} -> {shown[:-1]}, emb=1): one feature a step"]
    else:
        fix = [f"x = x.unsqueeze(-1)  # {shown} -> {shown[:-1]}, 1): one feature a step",
               f"and build the layer with input_size=1 (or feed it emb={emb} features a step)"]
    return fix, f"; the input is {shown} by the declared sizes bs={bs}, T={T}: it has no feature dim"


def _first_state(c: _Ctx, hx: Any) -> Any:
    """``h_0`` of a call's state (the first of an LSTM's tuple or list)."""
    return hx[0] if c.rule.as_tuple and isinstance(hx, (tuple, list)) and hx else hx


def _rebuild(conv: Conventions) -> str:
    """The second hint of a ``batch_first_swap``: build torch's layer the other way, or declare your own so."""
    lay = conv.layout
    if not conv.name:
        return lay.rebuild_hint(conv.kind)
    other = " ".join(lay.swapped_text.strip("()").split(", "))
    return f"or declare the layer the other way: sv.recurrent({conv.kind}, input={other!r}, ...)"


def _kind(x: object) -> str:
    """What a non-tensor input is, in an error: ``None`` as such, else its type's name."""
    return "None (no input)" if x is None else type(x).__name__


def _short(arg: str) -> str:
    return {"input": "x", "h_0": "h0", "c_0": "c0"}.get(arg, arg)


def _layer(c: _Ctx, x: Any, hx: Any) -> ShapeError | None:
    conv = c.conv
    lay = conv.layout
    seq = lay.seq_text
    if isinstance(x, PackedSequence):
        return _packed(c, x, hx)
    if not isinstance(x, Tensor):
        fix = "out, h = rnn(x)  # x:" if x is None else "x = torch.as_tensor(x)  #"
        return c.err("input_ndim", "input", x, [f"{fix} a {seq} float tensor"],
                     f"expected a Tensor or PackedSequence, got {_kind(x)}")
    sh = tuple(x.shape)
    nd = len(sh)
    weights = module_weight(c.module, conv.layout)
    if not x.dtype.is_floating_point and not x.dtype.is_complex:
        return _dtype_device(c, "input", x, weights, "weights")
    sizes = lay.seq_sizes(sh)
    if sizes is None:
        dims = seq.strip("()").replace("emb", str(conv.input_size))
        hints = [f"x = x.reshape({dims})  # a layer takes {seq} or unbatched (T, emb)"]
        if nd == 4 and 1 in sh[:3]:
            hints.insert(0, f"x = x.squeeze({sh.index(1)})  # drop the size-1 dim")
        if nd == 1:
            hints = ["x = x.view(1, 1, -1)  # one step of one sequence: (T=1, bs=1, emb)"]
        return c.err("input_ndim", "input", x, hints,
                     f"expected {lay.batched_ndim} dims {seq} (or {lay.unbatched_ndim} dims unbatched), "
                     f"received a {nd}-dim tensor")
    c.T, c.bs, c.batched = sizes
    also = ""  # a second mistake, named after the one whose fix is necessary
    # silent mistakes first: the evidence names the real culprit (the input, not h_0)
    state = _first_state(c, hx)
    state_bs = state_batch(c.rule, hx)
    if c.batched:
        via = swap_evidence(x, lay.t_axis, lay.bs_axis, c.T, c.bs, c.decl, state_bs)
        swapped = via is not None
        if swapped and sh[-1] != c.emb:  # a transpose would not fix it: emb comes first
            also = (f"; it is also laid out {lay.swapped_text} for a layer with {lay.flag_text} (evidence: {via})")
            c.T, c.bs = c.bs, c.T
        elif swapped:
            hints = [f"x = x.transpose(0, 1)  # {lay.swapped_text} -> {seq}", _rebuild(conv)]
            names = known_names(x)
            if lay.t_axis == 0 and names is not None and not provenance_speaks(names, 1, 2):  # only bs is known
                hints.insert(1, "or x = x.permute(2, 0, 1)  # if x is (bs, C, W), a conv's output: -> (W, bs, C)")
            if via.startswith("h_0"):  # a size match of the state alone: it may be a state kept from a bigger batch
                hints.append(f"or, if x is right and h_0 was kept from an earlier batch of {state_bs}: "
                             f"h0 = torch.zeros{_zeros(c, 'h_0')}  # a state for this batch (or pass none)")
            c.T, c.bs = c.bs, c.T
            return c.err("batch_first_swap", "input", x, hints,
                         f"the input is laid out {lay.swapped_text} for a layer with {lay.flag_text} "
                         f"(evidence: {via})")
    elif sh[-1] == c.emb:  # a 2-D input that fits as (T, emb): is it (bs, emb)? (else its last dim is the fault)
        evidence = None
        names = known_names(x)  # ops=True: provenance decides
        if names is not None and provenance_speaks(names, 0):
            # a batch of one is one step of one sequence: the same either way; a layer's summaries (bs, h) may be
            # the steps one level up (a document's sentence vectors)
            evidence = "this input's dim 0 comes from the model input's bs" \
                if names[0] == "bs" and sh[0] != 1 and not summary_of_steps(names) else None
        elif state_bs is not None and state_bs == sh[0]:
            evidence = f"h_0 is 3-D with batch {state.shape[1]} = this input's first dim"
        # declared sizes are no evidence: an unbatched sequence may have any length, bs among them (x[i, :len_i],
        # cat((ctx[i], q[i])))
        if evidence:
            c.batched, c.T, c.bs = True, 1, sh[0]
            return c.err("unbatched_ambiguous", "input", x,
                         [f"x = x.unsqueeze({lay.t_axis})  # (bs, emb) -> one time step {lay.step_text}",
                          *([] if conv.name else ["or use a cell for one step: nn." + conv.family + "Cell"])],
                         f"a 2-D input is read as unbatched (T, emb), but it is (bs, emb) ({evidence})")
    emb = c.emb
    if sh[-1] != emb:
        hints = [f"x = proj(x)  # nn.Linear({sh[-1]}, {emb}) maps emb={sh[-1]} -> {emb}",
                 f"or build the layer with input_size={sh[-1]}"]
        if also:
            hints.append(f"then x = x.transpose(0, 1)  # {lay.swapped_text} -> {seq}")
        if emb in sh[:-1]:
            i = sh.index(emb)
            order = [d for d in range(nd) if d != i] + [i]
            hints.insert(0, f"x = x.permute{tuple(order)}  # emb={emb} is dim {i}, it must be last")
        featureless = _no_feature_dim(c, sh)
        if featureless:  # (bs, T) by the declared sizes: a Linear from T, or input_size=T, would be wrong
            hints, also = featureless
            c.batched, c.T, c.bs = True, c.decl["T"], c.decl["bs"]  # type: ignore[index]
        return c.err("input_size", "input", x, hints, f"last dim is {sh[-1]}, but input_size is {emb}{also}")
    if c.T == 0:  # torch: "Expected sequence length to be larger than 0"
        c.T = None
        axis = lay.t_axis if c.batched else 0
        return c.err("input_ndim", "input", x, [f"if x.shape[{axis}] > 0: out, h = {c.var}(x)  # skip empty sequences",
                                                "or pack the batch with lengths >= 1"],
                     "an empty sequence: the time dim T is 0, and a layer needs at least one step",
                     expected=f"{c.named('input')} with T >= 1")
    bad = _dtype_device(c, "input", x, weights, "weights")
    if bad is not None:
        return bad
    if hx is None:
        return None
    return _layer_state(c, x, hx)


def _layer_state(c: _Ctx, x: Tensor, hx: Any) -> ShapeError | None:
    conv = c.conv
    if c.rule.as_tuple and isinstance(hx, Tensor):
        return c.err("state_type", "h_0", hx,
                     [f"lstm(x, (h0, c0))  # c0 = torch.zeros{_zeros(c, 'c_0')}"],
                     "an LSTM takes its state as a tuple (h_0, c_0), got one tensor",
                     expected=f"(h_0 {c.named('h_0')}, c_0 {c.named('c_0')})")
    return _states(c, x, hx, _one_state, ("lstm(x, (h0, c0))  # exactly two tensors",
                                          f"{c.var}(x, h0)  # a {conv.kind} takes one state tensor, not a tuple"))


def _states(c: _Ctx, x: Tensor, hx: Any, one: Any, hints: tuple[str, str]) -> ShapeError | None:
    """The state's structure (the rule's: a tuple of two for LSTMs, one tensor otherwise), then each."""
    conv = c.conv
    parts = state_parts(c.rule, hx)
    if parts is None and c.rule.as_tuple:
        n = len(hx) if isinstance(hx, (tuple, list)) else type(hx).__name__
        return c.err("state_type", "h_0", f"{type(hx).__name__} of {n}", [hints[0]],
                     f"an {conv.kind} takes its state as a tuple of two tensors (h_0, c_0)",
                     expected=f"(h_0 {c.named('h_0')}, c_0 {c.named('c_0')})")
    if parts is None:
        return c.err("state_type", "h_0", f"{type(hx).__name__} of {len(hx)}", [hints[1]],
                     f"a {conv.kind} has no cell state: pass h_0 itself, not a tuple")
    for arg, h in zip(("h_0", "c_0"), parts):
        bad = _tensor(c, x, arg, h, one)
        if bad is not None:
            return bad
    return None


def _tensor(c: _Ctx, x: Tensor, arg: str, h: Any, one: Any) -> ShapeError | None:
    if not isinstance(h, Tensor):
        return c.err("state_type", arg, type(h).__name__, [f"{_short(arg)} = torch.zeros{_zeros(c, arg)}"],
                     f"expected a Tensor, got {type(h).__name__}")
    return one(c, x, arg, h)


def _one_state(c: _Ctx, x: Tensor, arg: str, h: Any) -> ShapeError | None:
    conv = c.conv
    short = _short(arg)
    sh = tuple(h.shape)
    wants = state_shapes(c.rule, c.T, c.bs, c.batched)  # what the rule expected of h_0 (and c_0)
    want = wants[0 if arg == "h_0" else 1]
    ld, last, want_nd = want[0], want[-1], len(want)
    lay = conv.layout
    if len(sh) != want_nd:
        if c.batched and len(sh) == want_nd - 1:
            if sh[0] == c.bs:
                rep = "" if ld == 1 else f".repeat({ld}, 1, 1)"
                hint = f"{short} = {short}.unsqueeze(0){rep}  # (bs, h) -> (layers*D={ld}, bs, h)"
            else:
                hint = f"{short} = torch.zeros{_zeros(c, arg)}"
            return c.err("hidden_ndim", arg, h, [hint],
                         f"a layer's state is 3-D (layers*D, bs, h) even with one layer; got {len(sh)}-D")
        if not c.batched and len(sh) == want_nd + 1:
            hints = [f"x = x.unsqueeze({lay.bs_axis})  # give the input its batch dim"]
            if sh[1] == 1:
                hints.insert(0, f"{short} = {short}.squeeze(1)  # unbatched input takes (layers*D, h)")
            return c.err("hidden_ndim", arg, h, hints,
                         "the input is unbatched (T, emb), so the state must be 2-D (layers*D, h)")
        return c.err("hidden_ndim", arg, h, [f"{short} = torch.zeros{_zeros(c, arg)}"],
                     f"expected {want_nd} dims, received a {len(sh)}-dim tensor")
    if sh[0] != ld:
        if c.batched and sh[0] == c.bs and sh[1] == ld:
            return c.err("hidden_batch_first", arg, h,
                         [f"{short} = {short}.transpose(0, 1).contiguous()  # (bs, layers*D, h) -> "
                          "(layers*D, bs, h)"],
                         "the state is laid out (bs, layers*D, h): batch_first never applies to h_0/c_0; "
                         f"{arg} is always ({', '.join(conv.symbolic[arg].split())})")
        return c.err("hidden_layers", arg, h, _layers_hints(c, arg, sh[0]),
                     f"first dim is {sh[0]}, but layers*D = {conv.num_layers}*{conv.D} = {ld}"
                     + _missing_factor(conv, sh[0]))
    if c.batched and sh[1] != want[1]:
        # a smaller last batch: the state is right but for its batch (a state laid out (…, h, bs) is not)
        if c.bs is not None and sh[1] > c.bs and (sh[-1] == last or (c.decl or {}).get("bs") == sh[1]):
            hints = [f"{short} = {short}[:, :{c.bs}]  # the last batch of an epoch can be smaller",
                     "or DataLoader(..., drop_last=True)",
                     f"or create the state per batch: torch.zeros{_zeros(c, arg)}"]
        else:
            hints = [f"{short} = torch.zeros{_zeros(c, arg)}  # build the state for this batch size"]
        hints += time_as_batch(c, sh[1])
        return c.err("batch_mismatch", arg, h, hints,
                     f"its batch is {sh[1]}, but the input's {batch_said(c)}")
    if sh[-1] != last:
        if conv.proj_size and sh[-1] in (wants[0][-1], wants[1][-1]):  # h's size where c's is, or the reverse
            return c.err("proj_size", arg, h,
                         [f"h0: (layers*D, bs, proj={conv.proj_size}); "
                          f"c0: (layers*D, bs, h={conv.hidden_size})"],
                         f"with proj_size={conv.proj_size}, h is (…, proj={conv.proj_size}) "
                         f"but c is (…, h={conv.hidden_size})")
        return c.err("hidden_size", arg, h, [f"{short} = torch.zeros{_zeros(c, arg)}",
                                             f"or build the layer with hidden_size={sh[-1]}"],
                     f"last dim is {sh[-1]}, but it must be {last}")
    return _dtype_device(c, arg, h, x, "input")


def _zeros(c: _Ctx, arg: str) -> str:
    shape = c.conv.shapes(c.T, c.bs, batched=c.batched)[arg]
    names = c.conv.dim_exprs(c.batched)[arg]
    return "(" + ", ".join(n if s is None else str(s) for n, s in zip(names, shape)) + ")"


def _missing_factor(conv: Conventions, got: int) -> str:
    if conv.D == 2 and got == conv.num_layers:
        return " (missing the direction factor D=2: the layer is bidirectional)"
    if conv.num_layers > 1 and got == conv.D:
        return f" (missing the layers factor: num_layers={conv.num_layers})"
    return ""


def _layers_hints(c: _Ctx, arg: str, got: int) -> list[str]:
    short = _short(arg)
    ld = c.conv.stacked
    hints = [f"{short} = torch.zeros{_zeros(c, arg)}  # one slice per layer and direction"]
    if got == 1:
        rep = "1, 1" if c.batched else "1"
        hints.insert(0, f"{short} = {short}.repeat({ld}, {rep})  # same start for every layer/direction")
    return hints


def _packed(c: _Ctx, x: PackedSequence, hx: Any) -> ShapeError | None:
    conv = c.conv
    data, bsz = x.data, x.batch_sizes
    c.packed = True
    c.extra["sum(lengths)"] = int(data.shape[0]) if isinstance(data, Tensor) and data.dim() else None
    if not isinstance(data, Tensor) or data.dim() != c.rule.nd_unbatched:
        return c.err("packed", "input", data if isinstance(data, Tensor) else "?",
                     ["packed = pack_padded_sequence(x, lengths)  # x: (T, bs, emb) padded"],
                     "a PackedSequence's data must be 2-D (sum(lengths), emb)")
    sizes = packed_batch(bsz)
    if sizes is None:
        return c.err("packed", "input", f"batch_sizes {tuple(bsz.shape)} {bsz.dtype} on {bsz.device}",
                     ["packed = pack_padded_sequence(x, lengths.cpu())  # lengths live on the CPU"],
                     "batch_sizes must be a non-empty 1-D int64 CPU tensor, as pack_padded_sequence makes it",
                     expected="batch_sizes: 1-D int64 on cpu")
    c.bs, c.T = sizes
    if c.decl and packed_swapped(c.decl, c.bs, c.T, state_batch(c.rule, hx)) and not both_ways(c.bs, c.T):
        return c.err("packed", "input", data,
                     ["packed = pack_padded_sequence(x, lengths, batch_first=True)  # x is (bs, T, emb)"],
                     f"the packed sequence has {c.T} steps of batch {c.bs}, but declared sizes say "
                     f"bs={c.decl['bs']}, T={c.decl['T']}: a batch-first tensor was packed as seq-first")
    if data.shape[1] != c.emb:
        return c.err("input_size", "input", data,
                     [f"x = proj(x)  # nn.Linear({data.shape[1]}, {c.emb}) before packing"],
                     f"the packed data's last dim is {data.shape[1]}, but input_size is {c.emb}")
    bad = _dtype_device(c, "input", data, module_weight(c.module, conv.layout), "weights")
    if bad is not None or hx is None:
        return bad
    return _layer_state(c, data, hx)


# ------------------------------------------------------------------------------------------- cells
def _cell(c: _Ctx, x: Any, hx: Any) -> ShapeError | None:
    conv = c.conv
    if isinstance(x, PackedSequence):
        return c.err("packed", "input", "PackedSequence",
                     [f"out, h = nn.{conv.family}(...)(packed)  # layers take PackedSequence; cells take "
                      "one step (bs, emb)"], "a cell takes one time step, not a PackedSequence")
    if not isinstance(x, Tensor):
        fix = "h = cell(x_t, h)  # x_t:" if x is None else "x_t = torch.as_tensor(x_t)  #"
        return c.err("input_ndim", "input", x, [f"{fix} one step: (bs, emb)"],
                     f"expected a Tensor, got {_kind(x)}")
    sh = tuple(x.shape)
    weights = module_weight(c.module, conv.layout)
    if not x.dtype.is_floating_point and not x.dtype.is_complex:
        return _dtype_device(c, "input", x, weights, "weights")
    lay = conv.layout
    batched = lay.is_batched(len(sh))
    if len(sh) == c.rule.nd_batched + 1:  # a whole (T, bs, emb) sequence
        c.bs = sh[1]
        if sh[-1] == c.emb and 1 in sh[:2]:  # x[:, t:t+1] or a (bs, T=1, emb) step
            k = sh.index(1)
            c.bs = sh[1 - k]
            return c.err("input_ndim", "input", x,
                         [f"x_t = x_t.squeeze({k})  # {sh} -> ({sh[1 - k]}, {sh[-1]}): one step (bs, emb)"],
                         f"a cell takes one time step (bs, emb); got 3 dims {sh} with a size-1 dim {k}")
        return c.err("input_ndim", "input", x,
                     ["for x_t in x:  # x: (T, bs, emb) -> x_t: (bs, emb)",
                      "    h = cell(x_t, h)",
                      *([] if conv.name else [f"or use the layer: nn.{conv.family}({conv.input_size}, "
                                              f"{conv.hidden_size})"])],
                     "a cell takes one time step (bs, emb); got a whole 3-D sequence")
    if batched is None:
        return c.err("input_ndim", "input", x, ["x_t = x_t.reshape(bs, emb)  # one step: (bs, emb)"],
                     f"a cell takes (bs, emb) or unbatched (emb,); received a {len(sh)}-dim tensor")
    c.batched = batched
    if c.batched:
        c.bs = sh[0]
        if c.decl and cell_swapped(c.decl, sh[0], state_batch(c.rule, hx)):
            return cell_swap_error(c, x, sh[0], "emb")
    if sh[-1] != c.emb:
        return c.err("input_size", "input", x,
                     [f"x_t = proj(x_t)  # nn.Linear({sh[-1]}, {c.emb})",
                      f"or build the cell with input_size={sh[-1]}"],
                     f"last dim is {sh[-1]}, but input_size is {c.emb}")
    bad = _dtype_device(c, "input", x, weights, "weights")
    if bad is not None or hx is None:
        return bad
    return _states(c, x, hx, _cell_state, ("h, c = cell(x_t, (h, c))  # an LSTMCell takes and returns (h, c)",
                                           f"h = cell(x_t, h)  # a {conv.kind} takes one state tensor"))


_ITERATE_TIME = ["for x_t in x.transpose(0, 1):  # iterate time of a (bs, T, emb) tensor",
                 "or x_t = x[:, t]  # the t-th step of a batch-first tensor"]


def cell_swap_error(c: Any, x: Tensor, first: int, rest: str) -> ShapeError:
    """``batch_first_swap`` of a cell stepped over the batch dim of a batch-first tensor (declared sizes line
    up: :func:`~shapeviz.core.evidence.cell_swapped`); ``c`` is a diagnosis context (``decl``, ``bs``, ``err``)."""
    c.bs = c.decl["bs"]
    return c.err("batch_first_swap", "input", x, list(_ITERATE_TIME),
                 f"this step is (T={first}, {rest}): declared bs={c.decl['bs']}, T={c.decl['T']}; "
                 "the loop iterates the batch dim of a batch-first tensor")


def _cell_state(c: _Ctx, x: Tensor, arg: str, h: Any) -> ShapeError | None:
    conv = c.conv
    short = _short(arg)
    sh = tuple(h.shape)
    want = state_shapes(c.rule, None, c.bs, c.batched)[0 if arg == "h_0" else 1]  # what the rule expected
    if len(sh) != len(want):
        if len(sh) == c.rule.nd_batched + 1 and sh[0] == 1:
            hints = [f"{short} = {short}.squeeze(0)  # (1, bs, h) -> (bs, h): a cell has no layers dim"]
        elif len(sh) == c.rule.nd_batched + 1:
            hints = [f"{short} = {short}[-1]  # the top layer's state, (bs, h)"]
        elif c.batched and len(sh) == 1:
            hints = [f"{short} = {short}.expand({c.bs}, -1)  # (h,) -> (bs, h)"]
        else:
            hints = ["x_t = x_t.unsqueeze(0)  # batch the input too: (1, emb)",
                     f"or {short} = {short}.squeeze(0)"]
        return c.err("hidden_ndim", arg, h, hints,
                     f"a cell's state is {'(bs, h)' if c.batched else '(h,) for an unbatched step'}; "
                     f"got a {len(sh)}-dim tensor")
    if c.batched and sh[0] != want[0]:
        hints = ([f"{short} = {short}[:{c.bs}]  # the last batch of an epoch can be smaller"]
                 if sh[0] > c.bs and (sh[-1] == want[-1] or (c.decl or {}).get("bs") == sh[0]) else [])
        hints.append(f"{short} = torch.zeros{_zeros(c, arg)}  # state for this batch size")
        hints += time_as_batch(c, sh[0])
        return c.err("batch_mismatch", arg, h, hints, f"its batch is {sh[0]}, but the input's {batch_said(c)}")
    if sh[-1] != want[-1]:
        return c.err("hidden_size", arg, h, [f"{short} = torch.zeros{_zeros(c, arg)}",
                                             f"or build the cell with hidden_size={sh[-1]}"],
                     f"last dim is {sh[-1]}, but hidden_size is {conv.hidden_size}")
    return _dtype_device(c, arg, h, x, "input", dtype=arg != "c_0")  # torch's LSTMCell promotes c_0's dtype


__all__ = ["cell_swap_error", "diagnose"]
