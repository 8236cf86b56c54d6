"""Files shapeviz writes: all or nothing, and never over a file it did not write.

A diagram, a gallery page or a site file goes to a temporary file in the same folder, renamed into
place: a full disk or a ``ulimit -f`` leaves the old file as it was and no temporary file behind. The
static site refuses an empty path and a folder that holds other files (unless ``force=True``), and never
overwrites a file it did not write.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shapeviz import SpecError
from shapeviz.gallery.builder import write_if_changed
from shapeviz.render import files

HAS_BACKEND = shutil.which("dot") is not None or shutil.which("graphviz-pure") is not None
TINY = {"layers": (1,), "proj": (0,), "T": (1,), "bs": (1,)}
OLD = "<svg>the old diagram, 38 bytes long</svg>"


@pytest.fixture(autouse=True)
def _posix_only() -> None:
    if sys.platform == "win32":
        pytest.skip("RLIMIT_FSIZE, symlinks and modes as on POSIX")


def _under_file_size_limit(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child whose files may not grow past 1000 bytes (``ulimit -f``): writes fail with EFBIG."""
    prelude = textwrap.dedent("""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code), str(folder)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not HAS_BACKEND, reason="no dot program")
def test_a_render_that_cannot_be_written_leaves_the_old_file(tmp_path: Path) -> None:
    old = tmp_path / "diagram.svg"
    old.write_text(OLD)
    r = _under_file_size_limit("""
        import torch.nn as nn, shapeviz as sv
        try:
            sv.unroll(nn.LSTM(4, 6, num_layers=2), T=4, bs=2).render(sys.argv[1] + "/diagram.svg")
        except OSError as e:
            print("refused", e.errno)
    """, tmp_path)
    assert r.stdout.startswith("refused"), r.stderr[-2000:]
    assert old.read_text() == OLD  # before: a truncated SVG of 1000 bytes in its place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diagram.svg"]  # no temporary file left


def test_a_gallery_write_that_fails_leaves_the_old_file(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text(OLD)
    r = _under_file_size_limit("""
        from pathlib import Path
        from shapeviz.gallery.builder import write_if_changed
        try:
            write_if_changed(Path(sys.argv[1]) / "README.md", "x" * 5000)
        except OSError as e:
            print("refused", e.errno)
    """, tmp_path)
    assert r.stdout.startswith("refused"), r.stderr[-2000:]
    assert page.read_text() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


def test_an_interrupted_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "index.html"
    page.write_text(OLD)

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_if_changed(page, "new text")
    assert page.read_text() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]


def test_a_new_file_gets_the_usual_permissions_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    new = files.write_atomic(tmp_path / "new.svg", "x")
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~mask
    old = tmp_path / "old.svg"
    old.write_text("x")
    old.chmod(0o640)
    files.write_atomic(old, "y")
    assert stat.S_IMODE(old.stat().st_mode) == 0o640 and old.read_text() == "y"


def test_write_atomic_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("not shapeviz's")
    link = tmp_path / "diagram.svg"
    link.symlink_to(target)
    files.write_atomic(link, "<svg/>")
    assert target.read_text() == "not shapeviz's" and not link.is_symlink() and link.read_text() == "<svg/>"


# ---------------------------------------------------------------------- item 14: the static site
pytestmark_site = pytest.mark.skipif(not HAS_BACKEND, reason="the site renders with dot or graphviz-pure")


@pytestmark_site
def test_site_refuses_an_empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shapeviz.gallery.site import build_site

    monkeypatch.chdir(tmp_path)
    (tmp_path / "index.html").write_text("my own page")
    with pytest.raises(SpecError, match=r"no folder given .* force=True \(--force\)"):
        build_site("", grid=TINY)
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]  # before: 661 files, index.html overwritten
    assert (tmp_path / "index.html").read_text() == "my own page"


@pytestmark_site
def test_site_refuses_a_folder_that_holds_other_files(tmp_path: Path) -> None:
    from shapeviz.gallery.site import build_site

    (tmp_path / "style.css").write_text("body { color: red }")
    with pytest.raises(SpecError, match=r"already holds files and is not a shapeviz site .* force=True"):
        build_site(tmp_path, grid=TINY)
    with pytest.raises(SpecError, match=r"holds 1 file the site would overwrite but did not write \(style.css\)"):
        build_site(tmp_path, grid=TINY, force=True)  # force never overwrites a file the site did not write
    assert [p.name for p in tmp_path.iterdir()] == ["style.css"]
    assert (tmp_path / "style.css").read_text() == "body { color: red }"


@pytestmark_site
def test_site_refuses_a_file_as_its_folder(tmp_path: Path) -> None:
    from shapeviz.gallery.site import build_site

    (tmp_path / "site").write_text("x")
    with pytest.raises(SpecError, match="is a file, not a folder"):
        build_site(tmp_path / "site", grid=TINY)


@pytestmark_site
def test_site_beside_other_files_with_force_then_rebuilt_as_its_own(tmp_path: Path) -> None:
    from shapeviz.gallery.site import MANIFEST, build_site, planned_files

    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    written = build_site(tmp_path, grid=TINY, force=True)
    assert notes.read_text() == "mine"
    planned = planned_files(TINY)
    assert {str(p.relative_to(tmp_path)) for p in written} == set(planned)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["files"] == sorted(planned)
    (tmp_path / "index.html").write_text("stale")  # a file of the site's own: rewritten, without force
    again = build_site(tmp_path, grid=TINY)
    assert [p.name for p in again] == ["index.html"] and notes.read_text() == "mine"
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


@pytestmark_site
def test_site_manifest_cannot_claim_files_outside_the_folder(tmp_path: Path) -> None:
    from shapeviz.gallery.site import MANIFEST, claim

    site = tmp_path / "site"
    site.mkdir()
    (site / MANIFEST).write_text(json.dumps({"schema": "shapeviz.site/1", "files": ["../escape.txt", "/etc/x"]}))
    (site / "index.html").write_text("mine")
    with pytest.raises(SpecError, match=r"would overwrite but did not write \(index.html\)"):
        claim(site, ["index.html"])
    claim(site, ["explorer.html"])  # a site folder (it has a manifest): new files are fine
    files_now = json.loads((site / MANIFEST).read_text())["files"]
    assert files_now == ["explorer.html"]  # the entries outside the folder were dropped
