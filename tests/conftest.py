"""Shared test fixtures: where the real platform payloads live."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared/fixtures beside the checkout: real payloads, used unedited.
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.fail(f"real payload fixtures not found at {SHARED_FIXTURES} (expected ../shared/fixtures)")
    return SHARED_FIXTURES
