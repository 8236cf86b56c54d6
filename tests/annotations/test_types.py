"""mypy accepts tests/annotations/types/check_types.py (the aliases, @check and typed nn modules in typed code)."""

from __future__ import annotations

from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parents[2]


def test_check_types_passes_mypy() -> None:
    # The cache makes reruns take seconds (the first run reads torch's stubs: tens of seconds).
    stdout, stderr, status = api.run([
        "--follow-imports=silent", "--warn-unused-ignores", "--no-error-summary", "--show-error-codes",
        "--cache-dir", str(ROOT / ".mypy_cache"), str(ROOT / "tests" / "annotations" / "types" / "check_types.py"),
    ])
    assert status == 0, stdout + stderr
    assert stdout.strip() == ""
