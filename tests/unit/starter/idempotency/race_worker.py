"""One racer for test_sqlite's two-process test: claims keys of a shared SQLite store.

Usage: python race_worker.py DB GO_FILE KEYS. Prints "ready" once its store is open, waits until
GO_FILE exists, then acquires every key (completing the even ones, leaving the odd ones leased)
and prints one JSON line: {"acquired": [...], "busy": n, "done": n}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from rmqkit.starter.idempotency import Claim, SqliteIdempotencyStore


def wait_for_start(go: Path) -> None:
    """A start line, so that both processes hammer the same keys at the same time."""
    while not go.exists():
        time.sleep(0.001)


async def race(db: str, go: Path, keys: int) -> dict[str, object]:
    store = SqliteIdempotencyStore(db)
    await store.acquire("warm-up", str(id(store)), lease_s=1)  # opens the file, WAL and schema
    print("ready", flush=True)
    await asyncio.to_thread(wait_for_start, go)
    acquired: list[int] = []
    counts = {Claim.BUSY: 0, Claim.DONE: 0}
    for i in range(keys):
        claim = await store.acquire("race", f"k{i}", lease_s=3600)
        if claim is Claim.ACQUIRED:
            acquired.append(i)
            if i % 2 == 0:
                await store.complete("race", f"k{i}", retention_s=3600)
        else:
            counts[claim] += 1
    await store.close()
    return {"acquired": acquired, "busy": counts[Claim.BUSY], "done": counts[Claim.DONE]}


if __name__ == "__main__":
    result = asyncio.run(race(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])))
    print(json.dumps(result), flush=True)
