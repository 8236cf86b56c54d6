"""Where people use shapeviz from: the command line, IPython/Jupyter, and pytest.

>>> from shapeviz.apps.spec import parse_spec
>>> parse_spec("LSTM(10, 20, num_layers=2)").num_layers
2
"""
