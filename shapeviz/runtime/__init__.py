"""Checking at run time: the fast check, the diagnosis of a failed one, watch / checking / enable, declared
layers (``sv.recurrent``) and ``dry_run`` (a checked forward on the meta device).

>>> import torch, torch.nn as nn
>>> from shapeviz.runtime.fastcheck import check_call
>>> check_call(nn.GRU(4, 8), torch.randn(5, 2, 4))  # (T=5, bs=2, emb=4): fine, returns None
"""
