"""SIGKILL a writer process under load, then recover the store in the test process.

Each test runs several rounds on one store: a writer subprocess (`tests/crash/writer.py`) puts
messages from 8-32 concurrent tasks (single puts and batches, several topics and queues, bodies
from 16 bytes to 48 KiB, some with KiBs of properties, small segments so the CommitLog,
ConsumeQueues and IndexFiles roll) and is killed once it has acknowledged a random number of
messages (from none to 3,000: right after recovery, or in full flight). Most rounds the test then
opens the store itself, checks it (`checks.py`) and appends more; a few rounds leave the crashed
store to the next writer to recover. At the end a clean restart must keep everything.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.crash.checks import append_everywhere, check_acked, check_keys, check_store
from tests.crash.harness import AckedKey, add_acks, crash_seed, run_writer
from tests.crash.writer import Ack, FlushType, open_store

pytestmark = pytest.mark.crash

ROUNDS = 6


async def crash_rounds(root: Path, flush: FlushType, seed: int) -> None:
    rng = random.Random(seed)
    acked: dict[AckedKey, Ack] = {}
    # Some rounds (never the last) leave their crashed store to the next writer to recover.
    unchecked = set(rng.sample(range(ROUNDS - 1), ROUNDS // 3))
    for round_no in range(ROUNDS):
        kill_after = rng.choice([0, rng.randint(1, 60), rng.randint(200, 3000)])
        concurrency = rng.randint(8, 32)
        ctx = f"seed={seed} flush={flush} round={round_no} kill_after={kill_after}"
        out = await run_writer(
            root, flush, seed, round_no, ctx=ctx, concurrency=concurrency, kill_after=kill_after
        )
        add_acks(acked, out.acks, ctx)
        if round_no in unchecked:
            continue
        store = open_store(root, flush)
        await store.start()
        try:
            assert store.recovery is not None and store.recovery.crashed, f"{ctx}: no crash seen"
            contents = check_store(store, ctx)
            check_acked(contents, acked.values(), ctx)
            await check_keys(store, out.acks, ctx)
            add_acks(acked, await append_everywhere(store, contents, f"t{round_no}", ctx), ctx)
        finally:
            await store.stop()

    ctx = f"seed={seed} flush={flush} clean restart"
    store = open_store(root, flush)
    await store.start()
    try:
        assert store.recovery is not None and not store.recovery.crashed, f"{ctx}: crash seen"
        assert store.recovery.truncated_from is None, f"{ctx}: {store.recovery}"
        contents = check_store(store, ctx)
        check_acked(contents, acked.values(), ctx)
        await check_keys(
            store, rng.sample([acked[k] for k in sorted(acked)], min(500, len(acked))), ctx
        )
    finally:
        await store.stop()


async def test_sigkill_under_sync_flush_keeps_every_acknowledged_message(tmp_path: Path) -> None:
    # SYNC_FLUSH acknowledges after fdatasync: such a message would survive even a power loss.
    await crash_rounds(tmp_path / "store", "SYNC_FLUSH", crash_seed())


async def test_sigkill_under_async_flush_keeps_every_acknowledged_message(tmp_path: Path) -> None:
    # ASYNC_FLUSH acknowledges once the record is in the mapping, before any fsync. SIGKILL ends
    # the process, not the kernel: every byte written through the MAP_SHARED mapping is already in
    # the page cache, which the next process reads and the kernel writes back later. Only a power
    # loss or kernel crash could drop unflushed pages, so a killed writer loses nothing here.
    await crash_rounds(tmp_path / "store", "ASYNC_FLUSH", crash_seed())
