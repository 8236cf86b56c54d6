"""Shared fixtures: every test starts and ends with no shapeviz hook or patch installed; golden files.

Regenerate the golden files under tests/golden/ with ``pytest --regen`` (nothing else writes them): the
run lists every golden it changed. A run that holds every test using goldens fails on a golden file none of
them used (an orphan left behind by a renamed or removed test).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import settings

import shapeviz as sv

torch.set_num_threads(1)  # tiny tensors on 2 cores: torch's thread pool only contends

# In CI the fuzzers replay a fixed sequence of examples (reproducible, and what passed here passes
# there); run them without CI set to explore new examples.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


GOLDEN_DIR = Path(__file__).parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--regen", action="store_true",
                     help="write the golden files under tests/golden/ from the output instead of comparing")


_GOLDEN_USED = pytest.StashKey[set[str]]()
_GOLDEN_CHANGED = pytest.StashKey[list[str]]()
_GOLDEN_PARTIAL = pytest.StashKey[bool]()


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """``golden("cli/demo.txt", text)``: assert text equals tests/golden/cli/demo.txt (or write it, --regen)."""
    config = request.config
    regen = config.getoption("--regen")

    def compare(name: str, text: str) -> None:
        path = GOLDEN_DIR / name
        config.stash.setdefault(_GOLDEN_USED, set()).add(name)
        if regen:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                config.stash.setdefault(_GOLDEN_CHANGED, []).append(name)
            return
        assert path.exists(), f"missing golden {path}; create it with pytest --regen"
        assert text == path.read_text(encoding="utf-8"), f"{name} differs from {path} (pytest --regen to update)"

    return compare


def _uses_golden(item: pytest.Item) -> bool:
    return "golden" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the CUDA tests without a GPU; note whether every test that uses goldens is in this run (orphan
    goldens are judged only then)."""
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)
    files = {Path(str(i.path)).name for i in items if _uses_golden(i)}
    wanted = {p.name for p in Path(__file__).parent.rglob("test_*.py") if "golden(" in p.read_text(encoding="utf-8")}
    config.stash[_GOLDEN_PARTIAL] = not wanted <= files


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        if _uses_golden(item):
            item.config.stash[_GOLDEN_PARTIAL] = True


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    changed = config.stash.get(_GOLDEN_CHANGED, [])
    if config.getoption("--regen"):
        terminalreporter.write_line(f"golden files changed by --regen: {len(changed)}")
        for name in changed:
            terminalreporter.write_line(f"  {GOLDEN_DIR / name}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail a run that held every golden-using test on a golden file none of them used."""
    config = session.config
    if config.stash.get(_GOLDEN_PARTIAL, True) or session.testsfailed or exitstatus != 0:
        return
    used = config.stash.get(_GOLDEN_USED, set())
    orphans = sorted(str(p.relative_to(GOLDEN_DIR)) for p in GOLDEN_DIR.rglob("*") if p.is_file()
                     and str(p.relative_to(GOLDEN_DIR)) not in used)
    if orphans:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"golden files no test used (remove them): {', '.join(orphans)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def run_in_threads(work: Callable[[int], None], n: int = 8) -> None:
    """Run ``work(0)`` … ``work(n - 1)`` in n threads; fail with what any of them raised."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            work(i)
        except BaseException as e:  # reported below, from the test's own thread
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def count_global_state() -> int:
    """Hooks and patches shapeviz could have left behind, across torch's global registries."""
    from torch.nn.modules import module as m

    w = importlib.import_module("shapeviz.runtime.watching")  # the module, not the sv.watch function

    copies = importlib.import_module("shapeviz.tracing.copies")
    return (len(m._global_forward_pre_hooks) + len(m._global_forward_hooks) + len(w._ORIGINAL_FORWARDS)
            + len(w._live_handles) + copies.held())


@pytest.fixture(autouse=True)
def _clean_state():
    from shapeviz.core import dimensions

    sv.disable()
    torch.manual_seed(0)
    yield
    leaked = count_global_state()
    sv.disable()
    sizes = dimensions.declared()
    dimensions.DECLARED.set(None)  # so that one leak fails one test, not every test after it
    assert leaked == 0, "a test left shapeviz hooks or patches installed"
    assert sizes is None, f"a test left declared sizes behind: {sizes}"
