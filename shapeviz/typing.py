"""The public import path of shapeviz's jaxtyping aliases and ``@check`` (see :mod:`shapeviz.annotations`).

>>> from shapeviz.typing import Seq, check
>>> Seq.dim_str
'T bs emb'
"""

from shapeviz.annotations.aliases import *  # noqa: F403
from shapeviz.annotations.aliases import __all__  # noqa: F401
