"""The gallery: worked example models, their registry, and the builder that writes ``gallery/``.

>>> from shapeviz.gallery import EXAMPLES
>>> "embed_rnn" in EXAMPLES
True
"""

from shapeviz.gallery.builder import DIAGRAM, EXAMPLES, Built, Example, build, capture_error, index_text, render_texts

__all__ = ["DIAGRAM", "EXAMPLES", "Built", "Example", "build", "capture_error", "index_text", "render_texts"]
