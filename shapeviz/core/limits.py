"""The largest sizes shapeviz accepts from text it did not write (a CLI spec, a trace's JSON).

>>> MAX_LAYERS, MAX_SIZE
(100, 10000000)
"""

MAX_SIZE = 10_000_000
"""The largest input_size, hidden_size or proj_size a spec or a trace file may give."""

MAX_LAYERS = 100
"""Deepest stack a spec or a trace file may ask for: each layer is Python objects even on ``meta``,
so a spec such as ``GRU(1, 1, num_layers=5000000)`` would otherwise take minutes to build."""
