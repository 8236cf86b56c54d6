"""The gallery: worked example models, their registry, the builder that writes ``gallery/``, the static site.

>>> import torch
>>> from shapeviz.gallery import EXAMPLES, seeded
>>> "embed_rnn" in EXAMPLES, tuple(torch.randn(2, 3, generator=seeded(0)).shape)   # (bs, emb)
(True, (2, 3))

``Built``, ``assert_close``, ``fixed_seed`` and ``seeded`` are the registry's helpers; the pages' scripts do without
them (torch and ``import shapeviz as sv`` only: :mod:`shapeviz.gallery.script`).
"""

from shapeviz.gallery.builder import DIAGRAM, build, capture_error, index_text, page_script, render_texts
from shapeviz.gallery.models import assert_close, fixed_seed, seeded
from shapeviz.gallery.registry import EXAMPLES, SEED_SYSTEMS, Built, Example

__all__ = ["DIAGRAM", "EXAMPLES", "SEED_SYSTEMS", "Built", "Example", "assert_close", "build", "capture_error",
           "fixed_seed", "index_text", "page_script", "render_texts", "seeded"]
