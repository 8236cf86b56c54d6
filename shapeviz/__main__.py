"""``python -m shapeviz``: the command line (see :mod:`shapeviz.apps.cli`).

>>> from shapeviz.apps.cli import main
>>> main(["explain", "RNN(4, 8)", "--T", "5", "--bs", "2"]) == 0    # prints (T=5, bs=2, emb=4) ...
True
"""

import sys

from shapeviz.apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
