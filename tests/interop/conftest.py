"""Fixtures for the interop suite: a fresh `rmqkit serve` per test, real clients beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .harness import Lab, require_clients


@pytest.fixture
async def unstarted_lab(tmp_path: Path) -> AsyncIterator[Lab]:
    """A Lab whose test starts the server itself (`await lab.start_server(env=..., ...)`)."""
    require_clients()
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        await lab.close()


@pytest.fixture
async def lab(unstarted_lab: Lab) -> Lab:
    await unstarted_lab.start_server()
    return unstarted_lab
