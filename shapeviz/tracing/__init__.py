"""Tensor-shape traces: the records (Trace, Call, TensorInfo), how dims get names, the recorder, dry runs.

>>> import torch, torch.nn as nn
>>> from shapeviz.tracing.session import trace
>>> trace(nn.GRU(4, 8), torch.randn(5, 2, 4)).calls[0].outputs[0].shape
(5, 2, 8)
"""
