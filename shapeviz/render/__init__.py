"""Renderers: pure functions from shapeviz data (Conventions, Trace) to diagrams, tables and figures.

>>> from shapeviz.render.unrolled import unroll
>>> import torch.nn as nn
>>> "(bs=3, h=20)" in unroll(nn.GRU(10, 20), T=4, bs=3).source
True
"""
