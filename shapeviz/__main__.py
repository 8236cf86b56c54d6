"""``python -m shapeviz``: the command line (see :mod:`shapeviz.cli`).

>>> from shapeviz.cli import main
>>> main(["explain", "RNN(4, 8)", "--T", "5", "--bs", "2"]) == 0    # prints (T=5, bs=2, emb=4) ...
True
"""

import sys

from shapeviz.cli import main

if __name__ == "__main__":
    sys.exit(main())
