"""The public import path of shapeviz's typed ``nn`` drop-ins (see :mod:`shapeviz.annotations.modules`).

>>> from shapeviz.nn import LSTM
>>> LSTM(4, 8).hidden_size
8
"""

from shapeviz.annotations.modules import *  # noqa: F403
from shapeviz.annotations.modules import __all__  # noqa: F401
