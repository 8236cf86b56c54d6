"""Text renderers of :class:`~shapeviz.core.model.Conventions`: the teaching table of ``explain``.

>>> import torch.nn as nn
>>> from shapeviz.core.model import conventions
>>> print(explain_conventions(conventions(nn.GRUCell(8, 16)), bs=4).splitlines()[3])
  in    input     (bs, emb)  (bs=4, emb=8)
"""

from __future__ import annotations

from shapeviz._errors import SpecError
from shapeviz.core.dimensions import expr_size, format_named, format_shape
from shapeviz.core.model import Conventions

_ROLE = {"input": "in", "h_0": "in", "c_0": "in"}


class Explanation(str):
    """The table ``explain`` returns: a ``str`` that shows as the table itself, not one escaped line.

    >>> e = Explanation("RNN(4, 8)\\n  emb=4  h=8")
    >>> isinstance(e, str), repr(e) == str(e), e._repr_html_().startswith("<pre")
    (True, True, True)
    """

    def __repr__(self) -> str:  # the REPL shows the table
        return str(self)

    def _repr_html_(self) -> str:  # notebooks show it as a fixed-width block
        from html import escape

        return f'<pre class="sv-explain">{escape(str(self))}</pre>'


def explain(module: object, T: int | None = None, bs: int | None = None, style: str = "named") -> Explanation:
    """The teaching table of a recurrent module's shapes (``style="torch"``: PyTorch's notation).

    >>> import torch.nn as nn
    >>> print(explain(nn.RNN(10, 20, 2), T=5, bs=3).splitlines()[5])
      out   output    (T, bs, D*h)       (T=5, bs=3, D*h=20)
    """
    from shapeviz.core.model import conventions, style_of

    style = style_of(style)
    for name, v, least in (("T", T, 1), ("bs", bs, 0)):  # torch refuses T=0 ("sequence length ... > 0"), not bs=0
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < least):
            what = "a positive int (a layer needs at least one step)" if least else "a non-negative int"
            raise SpecError(f"explain: {name} must be {what} or None, got {v!r}")
    return Explanation(explain_conventions(conventions(module), T, bs, style))  # type: ignore[arg-type]


def explain_conventions(c: Conventions, T: int | None = None, bs: int | None = None,
                        style: str = "named") -> str:
    """The conventions of one module as a fixed-width table with the notes people get wrong."""
    sym = c.symbolic_style(style)
    sizes = c.torch_sizes(T, bs) if style == "torch" else c.bindings(T, bs)
    if c.declaration is not None:  # a layer declared with sv.recurrent: its declared dims, in its own names
        sizes = c.bindings(T, bs) | {c.layout.torch_name(k): v for k, v in c.bindings(T, bs).items()}
    lines = [c.label]
    own = {"emb": c.input_size, "h": c.hidden_size}
    if not c.cell:
        own.update(layers=c.num_layers, D=c.D)
    if c.proj_size:
        own["proj"] = c.proj_size
    if style == "torch":
        own = {"H_in": c.input_size, "H_out": c.h_out}
        if c.is_lstm:
            own["H_cell"] = c.hidden_size
        if not c.cell:
            own.update(num_layers=c.num_layers, D=c.D)
    if c.declaration is not None:
        own = dict(c.sizes)
    given = "  ".join(f"{k}={v}" for k, v in own.items())
    tb = {"L": T, "N": bs} if style == "torch" else {"T": T, "bs": bs}
    given += "".join(f"  {k}={v}" for k, v in tb.items() if v is not None)
    lines.append("  " + given)
    rows = [(_ROLE.get(name, "in" if name.endswith("_0") else "out"), name, format_shape(shape.split(" ")),
             format_named(shape.split(" "), sizes))
            for name, shape in sym.items()]
    w = max(len(r[2]) for r in rows)
    lines.append(f"  {'':4}  {'argument':8}  {'shape':{w}}  with sizes")
    lines.extend(f"  {r[0]:4}  {r[1]:8}  {r[2]:{w}}  {r[3]}" for r in rows)
    if c.declaration is not None:
        lines.append("notes")
        lines.extend(f"  * {n}" for n in declared_notes(c))
        return "\n".join(lines)
    if c.name:  # torch's conventions, declared for a class of the user's (sv.recurrent): only the batched form
        lines.append("notes")
        lines.append(f"  * declared with sv.recurrent: {c.kind} is checked and explained with nn.{c.family}"
                     f"{'Cell' if c.cell else ''}'s conventions (its batched form)")
        lines.extend(f"  * {n}" for n in notes(c, T, bs, style) if "packed" not in n)
        return "\n".join(lines)
    unb = c.symbolic_style(style, batched=False)
    first_out = c.result_names[0]
    lines.append(f"  unbatched: input {format_shape(unb['input'].split())} -> {first_out} "
                 f"{format_shape(unb[first_out].split())}; state {format_shape(unb['h_0'].split())}")
    if not c.cell:
        pk = c.symbolic_style(style, packed=True)
        lines.append(f"  packed:    input.data ({', '.join(pk['input'].split())}) -> output.data "
                     f"({', '.join(pk['output'].split())}); {'N' if style == 'torch' else 'bs'} = len(lengths)")
    lines.append("notes")
    lines.extend(f"  * {n}" for n in notes(c, T, bs, style))
    return "\n".join(lines)


def notes(c: Conventions, T: int | None = None, bs: int | None = None, style: str = "named") -> list[str]:
    """The facts about this module's shapes that people most often get wrong, in the table's notation.

    >>> import torch.nn as nn
    >>> from shapeviz.core.model import conventions
    >>> notes(conventions(nn.GRU(4, 8)), style="torch")[0]
    'batch_first=False applies to input and output only; h_0/h_n are always (D*num_layers, N, H_out)'
    """
    def word(expr: str, arg: str = "h_0") -> str:  # the table's notation: shapeviz's names, or PyTorch's
        return c.torch_expr(expr, arg) if style == "torch" else expr

    w = {"layers": word("layers"), "proj": word("proj")}
    T_, bs_, emb_, h_, c_ = word("T"), word("bs"), word("emb"), word("h"), word("h", "c_0")
    stack = word("layers*D")
    out: list[str] = []
    b = c.bindings(T, bs)
    if c.cell:
        out.append(f"a cell takes ONE time step: for x_t in x:  # x ({T_}, {bs_}, {emb_}) -> x_t ({bs_}, {emb_}); "
                   + ("h, c = cell(x_t, (h, c))" if c.is_lstm else "h = cell(x_t, h)"))
        out.append(f"its state is ({bs_}, {h_}): no layers or directions dim, unlike nn."
                   + c.family + f"'s ({stack}, {bs_}, {h_})")
        return out
    h = "proj" if c.proj_size else "h"
    hw = word(h)
    if c.is_lstm and (style == "torch" or c.proj_size):  # h and c differ in their last dim
        hn = h_ if style == "torch" else hw
        always = f"h_0/h_n are always ({stack}, {bs_}, {hn}), c_0/c_n ({stack}, {bs_}, {c_})"
    else:
        always = "h_0/h_n" + ("/c_0/c_n" if c.is_lstm else "") + f" are always ({stack}, {bs_}, {h_})"
    out.append(f"{c.layout.flag_text} applies to input and output only; {always}")
    out.append(f"h_n stacks layers and directions: h_n.view({c.num_layers}, {c.D}, -1, {expr_size(h, b)})  "
               f"# ({w['layers']}={c.num_layers}, D={c.D}, {bs_}, {hw}); "
               "h_n[layer*D + direction], so h_n[-1] is the top layer"
               + (", backward" if c.D == 2 else ""))
    ti = c.layout.time_index
    t_last, t_first = (f"[{ti}-1", f"[{ti}0") if ti else ("[-1, :", "[0, :")
    hs = expr_size(h, b)
    if c.D == 2:
        out.append(f"bidirectional: output{t_last}, :{hs}] equals h_n[-2] (forward lane ends at the last step); "
                   f"output{t_first}, {hs}:] equals h_n[-1] (backward lane ends at step 0)")
    else:
        out.append(f"output{t_last}] equals h_n[-1]: output holds the top layer at every step")
    out.append("not for output padded from a packed batch (pad_packed_sequence): sequence i ends at step "
               "lengths[i]-1, so its forward h_n is its output at that step; the padded steps after it hold zeros")
    if c.proj_size:
        out.append(f"proj_size={c.proj_size} changes h (h_0, h_n, output use {w['proj']}={c.proj_size}) but not c "
                   f"(c_0, c_n keep {c_}={c.hidden_size})")
    out.append("h_0/c_0 default to zeros when omitted" if c.is_lstm else "h_0 defaults to zeros when omitted")
    return out


def declared_notes(c: Conventions) -> list[str]:
    """What a layer declared with ``sv.recurrent`` takes, in its declared dims.

    >>> import torch.nn as nn
    >>> from shapeviz.core.declared import Declaration
    >>> d = Declaration("Scratch", ("T", "bs", "emb"), (("bs", "h"),), True, None, False, (("emb", "a"), ("h", "b")))
    >>> c = Conventions("RNN", cell=False, input_size=3, hidden_size=4, name="Scratch", declaration=d,
    ...                 declared_sizes=(("emb", 3), ("h", 4)))
    >>> declared_notes(c)[1]
    'the input is (T, bs, emb): for x_t in x:  # x_t (bs, emb), one time step'
    """
    d = c.declaration
    assert d is not None
    lay = c.layout
    out = [f"declared with sv.recurrent({c.kind}, {d.spec}): every call is checked against these dims"]
    step = "(" + ", ".join(n for n in d.input if n != "T") + ")"
    if d.cell:
        out.append(f"a cell takes ONE time step {lay.seq_text}: for x_t in x:  # x_t {step}")
    elif lay.t_axis == 0:
        out.append(f"the input is {lay.seq_text}: for x_t in x:  # x_t {step}, one time step")
    else:
        out.append(f"the input is {lay.seq_text}: x[{lay.time_index}t] is one time step {step}; "
                   f"a seq-first tensor needs x.transpose({min(lay.t_axis or 0, lay.bs_axis)}, "
                   f"{max(lay.t_axis or 0, lay.bs_axis)})")
    names = c.state_names
    shapes = ", ".join(f"{n} ({', '.join(s)})" for n, s in zip(names, d.state, strict=True))
    if d.state_tuple:
        passed = "(" + ", ".join(n.replace("_", "") for n in names) + ("," if len(names) == 1 else "") + ")"
        out.append(f"the state is a tuple of {len(names)}: {shapes}; pass {passed}, not a bare tensor")
    else:
        out.append(f"the state is one tensor: {shapes}")
    flat = {f for s in d.state for e in s for f in e.split("*")}
    if not d.cell and not flat & {"layers", "D"}:
        out.append("its state has no layers or directions dim, unlike nn.RNN's (layers*D, bs, h)")
    return out


def conventions_html(c: Conventions) -> str:
    """The teaching table as a notebook shows a :class:`Conventions` (``Conventions._repr_html_``).

    >>> from shapeviz.core.model import Conventions
    >>> conventions_html(Conventions("GRU", cell=True, input_size=2, hidden_size=3)).startswith("<pre>GRUCell(2, 3)")
    True
    """
    from html import escape

    return f"<pre>{escape(explain_conventions(c))}</pre>"
