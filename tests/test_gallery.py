"""The gallery: every page builds, the loops equal torch, the mistakes raise real ShapeErrors, and
the committed ``gallery/`` is not stale (DOT and text compared with a fresh build; not PNG bytes).

Rebuild the committed gallery with ``shapeviz gallery``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shapeviz.gallery.builder import DIAGRAM, EXAMPLES, build, capture_error, index_text, render_texts

GALLERY = Path(__file__).resolve().parent.parent / "gallery"
STALE = "gallery/ is stale: run `shapeviz gallery` and commit the result"

SEED_PAGES = {"scratch_char_rnn", "embed_rnn", "batch_first_loop", "bidirectional_loop", "rnncell_dataset",
              "rnn_3_layers", "hello_rnncell", "hello_rnn", "hello_embedding"}
OTHER_PAGES = {"lstm", "gru", "lstm_bidirectional", "lstm_proj", "gru_batch_first", "packed_sequences",
               "seq2seq_gru_encoder"}
MISTAKES = {"mistake_embedding_not_transposed": "batch_first_swap", "mistake_state_2d": "hidden_ndim",
            "mistake_bidirectional_state": "hidden_layers"}


def test_the_registry_has_every_page() -> None:
    assert set(EXAMPLES) == SEED_PAGES | OTHER_PAGES | set(MISTAKES)
    assert {n for n, e in EXAMPLES.items() if e.is_mistake} == set(MISTAKES)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_committed_page_is_fresh(name: str) -> None:
    fresh = render_texts(EXAMPLES[name])
    for fname, text in fresh.items():
        path = GALLERY / name / fname
        assert path.exists(), f"{path} is missing; {STALE}"
        assert path.read_text(encoding="utf-8") == text, f"{path} differs from a fresh build; {STALE}"
    for fmt in ("svg", "png"):
        assert (GALLERY / name / f"{DIAGRAM}.{fmt}").stat().st_size > 1000, f"{name}: no {fmt}; {STALE}"


def test_committed_index_is_fresh_and_links_every_page() -> None:
    text = (GALLERY / "README.md").read_text(encoding="utf-8")
    assert text == index_text(), f"gallery/README.md differs from a fresh build; {STALE}"
    for name in EXAMPLES:
        assert f'<img src="{name}/{DIAGRAM}.png"' in text and f"({name}/README.md)" in text


def test_gallery_has_no_leftover_pages_and_stays_small() -> None:
    folders = {p.name for p in GALLERY.iterdir() if p.is_dir()}
    assert folders == set(EXAMPLES)
    total = sum(p.stat().st_size for p in GALLERY.rglob("*") if p.is_file())
    assert total < 10 * 2**20


@pytest.mark.parametrize(("name", "code"), list(MISTAKES.items()))
def test_mistake_pages_show_the_real_error_and_a_fix_that_runs(name: str, code: str) -> None:
    err = capture_error(EXAMPLES[name])  # also runs the fix, which must not raise
    assert err.code == code
    page = (GALLERY / name / "README.md").read_text(encoding="utf-8")
    assert f"## What shapeviz says (`{code}`)" in page
    assert str(err) in page and "## The fix" in page


@pytest.mark.parametrize("name", ["scratch_char_rnn", "batch_first_loop", "bidirectional_loop"])
def test_hand_written_loops_are_checked_equal_to_torch(name: str) -> None:
    built = EXAMPLES[name].build()  # the builder raises when the loop and nn.RNN differ
    assert len(built.checks) == 2
    assert all("equal within 1e-6" in c for c in built.checks)


def test_pages_show_their_code_from_the_registry() -> None:
    page = render_texts(EXAMPLES["embed_rnn"])["README.md"]
    assert "class EmbedRNN(nn.Module):" in page and "def embed_rnn() -> Built:" in page
    assert "@_example" not in page  # the registry's decorator is not part of the example
    assert "## Conventions: `sv.explain(RNN(20, 32), T=5, bs=2)`" in page
    assert "2    rnn (RNN)" in page


def test_build_writes_text_files_and_the_index(tmp_path: Path) -> None:
    lines: list[str] = []
    written = build(tmp_path, images=False, names=["gru", "lstm"], progress=lines.append)
    assert sorted(str(p.relative_to(tmp_path)) for p in written) == [
        "README.md", "gru/README.md", "gru/unrolled.dot", "lstm/README.md", "lstm/unrolled.dot"]
    assert lines == ["[1/2] gru: nn.GRU", "[2/2] lstm: nn.LSTM: state is a pair (h, c)"]


def test_build_rejects_unknown_names(tmp_path: Path) -> None:
    import shapeviz as sv

    with pytest.raises(sv.SpecError, match="unknown gallery example"):
        build(tmp_path, names=["nope"])
