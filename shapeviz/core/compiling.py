"""Is torch compiling the code running now? The two tests shapeviz stands aside by, under every torch version
``pyproject.toml`` admits (older torch lacks the ``torch.compiler`` names).

>>> is_compiling(), dynamo_compiling()  # eagerly
(False, False)
"""

from __future__ import annotations

import torch

__all__ = ["dynamo_compiling", "is_compiling"]

is_compiling = getattr(torch.compiler, "is_compiling", None) or torch._dynamo.is_compiling
# dynamo folds this to True while it traces; eagerly it is ``return False`` (``is_compiling`` costs three times
# as much: it asks torch.jit first). Non-strict export and AOTAutograd call the hot path with fake tensors,
# which its ``type(x) is Tensor`` test sends the long way, where ``is_compiling`` is asked.
dynamo_compiling = getattr(torch.compiler, "is_dynamo_compiling", None) or is_compiling
