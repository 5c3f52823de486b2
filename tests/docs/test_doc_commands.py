"""Every command shown in docs/*.md, README.md and examples/*/README.md runs, as do marked programs.

One test per block (`docs/operations.md:42`). The selected blocks all run at once in a thread pool
the first time one of them is needed (most of the time goes to servers starting and stopping), so
the whole set takes about as long as its slowest block. How a block runs, and the markers that
change it, are described in `tests/docs/runner.py` and `tests/docs/blocks.py`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.docs.blocks import DocBlock, all_blocks
from tests.docs.runner import run_block

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]

WORKERS = 8
BLOCKS = all_blocks()
RUNNABLE = [b for b in BLOCKS if b.runs]


def _files(block: DocBlock) -> dict[str, str]:
    """The `file NAME` blocks of the block's document."""
    return {
        name: b.text for b in BLOCKS if b.path == block.path and (name := b.arg("file")) is not None
    }


class Results:
    """Runs the selected blocks concurrently on first use; `outcome(block)` is its result."""

    def __init__(self, selected: list[DocBlock], root: Path) -> None:
        self.selected = selected
        self.root = root
        self.done: dict[str, BaseException | str] | None = None

    def _one(self, i: int, block: DocBlock) -> BaseException | str:
        try:
            return run_block(block, _files(block), self.root / f"b{i}-{Path(block.path).stem}")
        except BaseException as exc:  # reported by the block's own test
            return exc

    def outcome(self, block: DocBlock) -> BaseException | str:
        if self.done is None:
            with ThreadPoolExecutor(WORKERS) as pool:
                futures = {b.id: pool.submit(self._one, i, b) for i, b in enumerate(self.selected)}
            self.done = {k: f.result() for k, f in futures.items()}
        if block.id not in self.done:  # not collected with the others: run it alone
            self.done[block.id] = self._one(len(self.done), block)
        return self.done[block.id]


@pytest.fixture(scope="session")
def doc_results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Results:
    ids = {
        item.callspec.params["block"].id
        for item in request.session.items
        if hasattr(item, "callspec") and isinstance(item.callspec.params.get("block"), DocBlock)
    }
    selected = [b for b in RUNNABLE if b.id in ids]
    return Results(selected, tmp_path_factory.mktemp("doc-blocks"))


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_documented_block_runs(block: DocBlock, doc_results: Results) -> None:
    outcome = doc_results.outcome(block)
    if isinstance(outcome, BaseException):
        raise outcome
