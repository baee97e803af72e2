"""Shared fixtures: where the real data lives, and the repository root."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# CI puts the shared data beside the checkout; a user's clone may not have it (tests then skip).
SHARED_DATA = Path(os.environ.get("UER_DS_SHARED_DATA", ROOT.parent / "shared" / "data"))
CORPORA = ROOT / "corpora"


def shared(relative: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"needs {path} (the shared UER-py data; set UER_DS_SHARED_DATA to its folder)")
    return path


@pytest.fixture
def zh_vocab() -> Path:
    return shared("models/google_zh_vocab.txt")


@pytest.fixture(scope="session")
def sample_vocab() -> Path:
    return CORPORA / "vocab.txt"
