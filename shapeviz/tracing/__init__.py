"""Tensor-shape traces: ``records`` (Trace, Call, TensorInfo, JSON out), ``json_reader`` (JSON in,
checked), ``naming`` (how dims get names), ``oprules`` (names through ops), ``recorder`` (hooks and
op mode), ``session`` (the ``trace()`` entry point), ``dryrun`` (``dry_run()``).

>>> import torch, torch.nn as nn
>>> from shapeviz.tracing.session import trace
>>> trace(nn.GRU(4, 8), torch.randn(5, 2, 4)).calls[0].outputs[0].shape
(5, 2, 8)
"""
