"""The one model of PyTorch's recurrent shape conventions, and the only place that knows the layout rule.

>>> import torch.nn as nn
>>> from shapeviz.core.model import conventions
>>> conventions(nn.GRU(8, 16, batch_first=True)).layout.bs_axis
0

* :mod:`~shapeviz.core.dimensions`: dim names, declared sizes (``sv.dims``), the shape formatters;
* :mod:`~shapeviz.core.model`: :class:`~shapeviz.core.model.Conventions` and its compiled ``Layout``;
* :mod:`~shapeviz.core.evidence`: what declared sizes prove about a call (a swapped layout, …);
* :mod:`~shapeviz.core.frames`: where the user's code is on the stack.
"""
