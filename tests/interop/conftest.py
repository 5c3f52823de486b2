"""Fixtures for the interop suite: a fresh `rmqkit serve` per test, real clients beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .harness import Lab, require_clients


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    require_clients()
    lab = Lab(tmp_path)
    try:
        await lab.start_server()
        yield lab
    finally:
        await lab.close()
