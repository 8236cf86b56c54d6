"""The public import path of the from-scratch reference RNNs (see :mod:`shapeviz.annotations.scratch_models`).

>>> from shapeviz.scratch import ScratchRNN
>>> ScratchRNN(4, 8).hidden_size
8
"""

from shapeviz.annotations.scratch_models import *  # noqa: F403
from shapeviz.annotations.scratch_models import __all__  # noqa: F401
