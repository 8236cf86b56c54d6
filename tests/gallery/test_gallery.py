"""The gallery: every page builds, the loops equal torch, the mistakes raise real ShapeErrors, and
the committed ``gallery/`` is not stale (DOT and text compared with a fresh build; not PNG bytes).

Rebuild the committed gallery with ``shapeviz gallery``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from shapeviz.gallery.builder import DIAGRAM, EXAMPLES, build, capture_error, index_text, render_texts
from shapeviz.gallery.registry import SEED_SYSTEMS

GALLERY = Path(__file__).resolve().parents[2] / "gallery"
STALE = "gallery/ is stale: run `shapeviz gallery` and commit the result"

SEED_PAGES = set(SEED_SYSTEMS)
OTHER_PAGES = {"lstm", "gru", "lstm_bidirectional", "lstm_proj", "gru_batch_first", "packed_sequences",
               "seq2seq_gru_encoder", "seq2seq_greedy", "seq2seq_teacher_forcing", "seq2seq_attention",
               "captioning_sample", "stacked_cells", "seeds_predict", "beam_search", "skip_rnn"}
OWN_LAYERS = {"own_scratch_rnn", "own_gate_lstm", "own_min_gru"}  # sv.recurrent
MISTAKES = {"mistake_embedding_not_transposed": "batch_first_swap", "mistake_state_2d": "hidden_ndim",
            "mistake_bidirectional_state": "hidden_layers", "mistake_scrambled_view": "scrambled_view",
            "mistake_flatten_order": "flatten_order"}


def test_the_registry_has_every_page() -> None:
    assert set(EXAMPLES) == SEED_PAGES | OTHER_PAGES | OWN_LAYERS | set(MISTAKES)
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


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_page_links_its_diagram_at_full_size(name: str) -> None:
    """The diagram on a page is a link to the SVG itself (wide ones are unreadable scaled)."""
    page = (GALLERY / name / "README.md").read_text(encoding="utf-8")
    assert f"[![{EXAMPLES[name].title}: unrolled diagram]({DIAGRAM}.svg)]({DIAGRAM}.svg)" in page
    assert f"The diagram at full size: [{DIAGRAM}.svg]({DIAGRAM}.svg)" in page


def test_committed_index_is_fresh_and_links_every_page() -> None:
    text = (GALLERY / "README.md").read_text(encoding="utf-8")
    assert text == index_text(), f"gallery/README.md differs from a fresh build; {STALE}"
    for name in EXAMPLES:
        assert f'<img src="{name}/{DIAGRAM}.png"' in text and f"({name}/README.md)" in text


def test_gallery_has_no_leftover_pages_and_stays_small() -> None:
    folders = {p.name for p in GALLERY.iterdir() if p.is_dir()}
    assert folders == set(EXAMPLES) | {"models"}  # models/: model files for the CLI
    total = sum(p.stat().st_size for p in GALLERY.rglob("*") if p.is_file())
    assert total < 10 * 2**20


@pytest.mark.parametrize(("name", "code"), list(MISTAKES.items()))
def test_mistake_pages_show_the_real_error_and_a_fix_that_runs(name: str, code: str) -> None:
    err = capture_error(EXAMPLES[name])  # also runs the fix, which must not raise
    assert err.code == code
    page = (GALLERY / name / "README.md").read_text(encoding="utf-8")
    assert f"(`{code}`)\n" in page and "## What shapeviz says about" in page
    assert str(err) in page and "## The fix" in page
    dot = (GALLERY / name / f"{DIAGRAM}.dot").read_text(encoding="utf-8")
    assert "the mistake: " in dot and "the fix: " in dot and f"{err.argument} given: {err.actual}" in dot


@pytest.mark.parametrize("name", ["scratch_char_rnn", "batch_first_loop", "bidirectional_loop"])
def test_hand_written_loops_are_checked_equal_to_torch(name: str) -> None:
    built = EXAMPLES[name].build()  # the builder raises when the loop and nn.RNN differ
    assert len(built.checks) == 2
    assert all("equal within 1e-6" in c for c in built.checks)


def test_pages_show_their_code_from_the_registry() -> None:
    page = render_texts(EXAMPLES["embed_rnn"])["README.md"]
    assert "class EmbedRNN(nn.Module):" in page and "model = EmbedRNN(vocab=28, emb=20, hidden=32)" in page
    assert "@_example" not in page  # the registry's decorator is not part of the example
    assert "## Conventions: `sv.explain(RNN(20, 32), T=5, bs=2)`" in page
    assert "2    rnn (RNN)" in page


def test_build_writes_text_files_and_the_index(tmp_path: Path) -> None:
    lines: list[str] = []
    written = build(tmp_path, images=False, names=["gru", "lstm"], progress=lines.append)
    assert sorted(str(p.relative_to(tmp_path)) for p in written) == [
        "README.md", "gru/README.md", "gru/unrolled.dot", "lstm/README.md", "lstm/unrolled.dot"]
    assert lines == ["[1/2] gru: nn.GRU", "[2/2] lstm: nn.LSTM: state is a pair (h, c)"]
    assert build(tmp_path, images=False, names=["gru", "lstm"]) == []  # nothing changed: nothing rewritten


def test_build_rejects_unknown_names(tmp_path: Path) -> None:
    import shapeviz as sv

    with pytest.raises(sv.SpecError, match="unknown gallery example"):
        build(tmp_path, names=["nope"])


def _script(name: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (GALLERY / name / "README.md").read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, f"{name}: one complete script per page"
    return blocks[0]


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_page_scripts_use_torch_and_the_public_api_only(name: str) -> None:
    """A page's script is what a student writes: torch, `import shapeviz as sv` and sv's
    public names; no gallery helpers (Built, seeded, fixed_seed), no `inputs=None`."""
    import ast

    import shapeviz as sv

    script = _script(name)
    tree = ast.parse(script)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module is not None and node.module.split(".")[0] == "torch", (name, node.module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] == "torch" or (alias.name, alias.asname) == ("shapeviz", "sv"), \
                    (name, alias.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sv":
            assert node.attr in sv.__all__, (name, node.attr)
    for word in ("Built", "seeded", "fixed_seed", "shapeviz.gallery", "inputs=None", "layer_or_model"):
        assert word not in script, (name, word)
    assert script.splitlines().count("import shapeviz as sv") == 1


_RUNNER = """
import os, sys, traceback
for name, code in zip(sys.argv[1::2], sys.argv[2::2]):
    os.makedirs(name)
    os.chdir(name)
    try:
        exec(compile(code, name + '.py', 'exec'), {'__name__': '__main__'})  # a fresh namespace per page
    except BaseException:
        print('FAILED', name, traceback.format_exc(), file=sys.stderr)
    print('<<<end of', name, '>>>')
    os.chdir('..')
"""


def test_every_page_script_runs_as_pasted(tmp_path: Path) -> None:
    """Every page's code block, as pasted, in a fresh interpreter: it builds, checks, traces and draws."""
    args = [a for name in EXAMPLES for a in (name, _script(name))]
    proc = subprocess.run([sys.executable, "-c", _RUNNER, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0 and "FAILED" not in proc.stderr, proc.stderr[-3000:]
    outputs = dict(zip(EXAMPLES, proc.stdout.split("<<<end of")))
    for name, out in outputs.items():
        assert "trace of" in out and (tmp_path / name / f"{name}.svg").stat().st_size > 1000, name
        if EXAMPLES[name].is_mistake:
            assert "hint:" in out, name


def test_rebuilding_an_unchanged_page_rewrites_nothing(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(GALLERY / "gru", tmp_path / "gru")
    assert build(tmp_path, names=["gru"]) == [tmp_path / "README.md"]  # only the (new) index


def test_beam_search_page_is_drawn_true() -> None:
    """Every decoding step after the first is fed back with a token; the 5 steps are not T;
    the decoder's bs=6 (bs*k) is said to be its own."""
    dot = (GALLERY / "beam_search" / "unrolled.dot").read_text()
    head = next(line for line in dot.splitlines() if line.strip().startswith("label=<cell: GRUCell(4, 8)"))
    assert "unrolled over time: 5 calls, bs=6" in head and "T=5" not in head
    assert "bs=6 is the size of this layer&#x27;s own input (another layer here has bs=2)" in head
    assert "red dashed &#x27;token&#x27;: 4 of 5 steps take a token chosen from the previous step" in head
    assert "greedy" not in head
    assert sum(" label=token " in line for line in dot.splitlines()) == 4
    # encoder -> decoder, repeated k times: the 6 rows are bs*k, not the model's bs=2, so 6 is not called bs
    assert 'label="h_n (layers*D=1, bs=2, h=8)\\n→ h_0 (6, h=8)"' in dot
    readme = (GALLERY / "beam_search" / "README.md").read_text()
    assert "× T=5" not in readme and "× 5" in readme


def test_skip_rnn_page_is_drawn_true() -> None:
    """The skip GRU's T=4 and bs=6 (T/skip, bs*skip) are said to be its own input's."""
    dot = (GALLERY / "skip_rnn" / "unrolled.dot").read_text()
    assert "gru: GRU(4, 6)   unrolled over time: T=12, bs=2<BR ALIGN=\"LEFT\"/>T=12, bs=2 are the sizes of this " \
           "layer&#x27;s own input (another layer here has T=4, bs=6)" in dot
    assert "gru_skip: GRU(4, 6)   unrolled over time: T=4, bs=6<BR ALIGN=\"LEFT\"/>T=4, bs=6 are the sizes of " \
           "this layer&#x27;s own input (another layer here has T=12, bs=2)" in dot
    readme = (GALLERY / "skip_rnn" / "README.md").read_text()
    assert "⚠" not in readme and "scrambled_view" not in readme
