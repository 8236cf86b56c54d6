"""Shared fixtures: every test starts and ends with no shapeviz hook or patch installed; golden files.

Regenerate the golden files under tests/golden/ with ``pytest --regen`` (or SHAPEVIZ_REGEN_GOLDEN=1).
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


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """``golden("cli/demo.txt", text)``: assert text equals tests/golden/cli/demo.txt (or write it, --regen)."""
    regen = request.config.getoption("--regen") or os.environ.get("SHAPEVIZ_REGEN_GOLDEN") == "1"

    def compare(name: str, text: str) -> None:
        path = GOLDEN_DIR / name
        if regen:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return
        assert path.exists(), f"missing golden {path}; create it with pytest --regen"
        assert text == path.read_text(encoding="utf-8"), f"{name} differs from {path} (pytest --regen to update)"

    return compare


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

    copies = importlib.import_module("shapeviz.runtime.copies")
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
    dimensions._stack.set(())  # so that one leak fails one test, not every test after it
    dimensions.DECLARED.set(None)
    assert leaked == 0, "a test left shapeviz hooks or patches installed"
    assert sizes is None, f"a test left declared sizes behind: {sizes}"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
