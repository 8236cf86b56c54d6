"""Tensor-shape traces: ``records`` (Trace, Call, TensorInfo, JSON out), ``runs`` (repeated steps stored
once), ``json_reader`` (JSON in, checked), ``naming`` (how dims get names), ``oprules`` (names through ops),
``recorder`` (the Tracer, made of ``tensorbook``: tensor records, ``modulecalls``: the call stack,
``oprecorder``: the op mode and op records, ``provenance``: data flow, ``modestack``: the mode stepping
aside), ``session`` (the ``trace()`` entry point), ``meta`` (shapes on the meta device, for ``dry_run()``),
``copies`` (a copied model carries no shapeviz hook).

>>> import torch, torch.nn as nn
>>> from shapeviz.tracing.session import trace
>>> trace(nn.GRU(4, 8), torch.randn(5, 2, 4)).calls[0].outputs[0].shape
(5, 2, 8)
"""
