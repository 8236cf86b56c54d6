"""Shapes written in annotations: jaxtyping aliases, ``@check`` (parser, checker, explainer), typed ``nn``.

>>> from shapeviz.annotations.aliases import Seq, Hidden
>>> Seq.dim_str, Hidden.dim_str
('T bs emb', 'layers*D bs h')
"""
