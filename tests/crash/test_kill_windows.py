"""SIGKILL inside the store's narrowest windows, where a random kill lands once in hundreds:

- between creating a file and sizing it (CommitLog, ConsumeQueue, IndexFile);
- between shrinking a file and growing it back (`MappedFile.zero_from`, run by every recovery);
- while a record is written, with all of it but the end of its properties in place;
- between writing an index key's entry and the IndexFile header that counts it;
- inside an IndexFile header write, which `struct.pack_into` zero-fills first, and inside the
  copy of a full IndexFile's hash slots (kept in memory while it fills) into the file.

The writer arms a fault (`writer.arm_fault`) that kills it at exactly that point. The store must
then start, keep every acknowledged message (found by offset and by key) and agree with itself.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from rmqkit.server.store.checkpoint import CheckpointFile
from rmqkit.server.store.mapped_file import MappedFileQueue
from rmqkit.server.store.recovery import find_valid_end
from tests.crash.checks import append_everywhere, check_acked, check_keys, check_store
from tests.crash.harness import AckedKey, add_acks, crash_seed, run_writer
from tests.crash.writer import (
    CQ_FILE_BYTES,
    INDEX_FILE_BYTES,
    SEGMENT_BYTES,
    Ack,
    FlushType,
    open_store,
)

pytestmark = pytest.mark.crash

FILE_BYTES = {"commitlog": SEGMENT_BYTES, "consumequeue": CQ_FILE_BYTES, "index": INDEX_FILE_BYTES}
NTH_FILE = {"commitlog": (2, 4), "consumequeue": (1, 6), "index": (1, 3)}
"""Which new file to die at; the CommitLog's first segment would leave nothing to check."""


def short_files(root: Path, kind: str) -> list[str]:
    """Files of `kind` smaller than their configured size (what a kill in a window leaves)."""
    return sorted(
        p.name
        for p in (root / kind).rglob("*")
        if p.is_file() and p.stat().st_size < FILE_BYTES[kind]
    )


def commit_log_gets_cut(root: Path) -> bool:
    """Whether a recovery of the CommitLog at `root` will cut a file (`zero_from`).

    It cuts the file that holds the valid end; a log that ends on a segment's end, with no
    segment after it, has none.
    """
    queue = MappedFileQueue(root / "commitlog", SEGMENT_BYTES)
    queue.load()
    try:
        end, _, _ = find_valid_end(queue, queue.min_offset)
        return queue.find(end) is not None
    finally:
        queue.close()


async def recover_and_check(
    root: Path, flush: FlushType, acked: dict[AckedKey, Ack], ctx: str
) -> None:
    """Open the crashed store, check it, append, stop; then a clean restart keeps it all."""
    store = open_store(root, flush)
    await store.start()
    try:
        assert store.recovery is not None and store.recovery.crashed, f"{ctx}: no crash seen"
        contents = check_store(store, ctx)
        check_acked(contents, acked.values(), ctx)
        await check_keys(store, acked.values(), ctx)
        add_acks(acked, await append_everywhere(store, contents, "after", ctx), ctx)
    finally:
        await store.stop()
    ctx = f"{ctx} clean restart"
    store = open_store(root, flush)
    await store.start()
    try:
        assert store.recovery is not None and not store.recovery.crashed, f"{ctx}: crash seen"
        check_acked(check_store(store, ctx), acked.values(), ctx)
    finally:
        await store.stop()


@pytest.mark.parametrize("kind", ["commitlog", "consumequeue", "index"])
async def test_kill_between_creating_and_sizing_a_file(tmp_path: Path, kind: str) -> None:
    seed = crash_seed()
    nth = random.Random(seed).randint(*NTH_FILE[kind])
    root = tmp_path / "store"
    ctx = f"seed={seed} kind={kind} nth={nth}"
    acked: dict[AckedKey, Ack] = {}
    out = await run_writer(
        root, "SYNC_FLUSH", seed, 0, ctx=ctx, die_at=f"create:{FILE_BYTES[kind]}:{nth}"
    )
    add_acks(acked, out.acks, ctx)
    assert short_files(root, kind), f"{ctx}: the writer died without leaving an empty file"
    await recover_and_check(root, "SYNC_FLUSH", acked, ctx)


@pytest.mark.parametrize("kind", ["commitlog", "consumequeue"])
async def test_kill_between_shrinking_and_regrowing_a_file(tmp_path: Path, kind: str) -> None:
    seed = crash_seed()
    rng = random.Random(seed)
    root = tmp_path / "store"
    kill_after = rng.randint(300, 1500)
    # A recovery cuts the CommitLog once and each of the 12 ConsumeQueues once.
    nth = 1 if kind == "commitlog" else rng.randint(1, 6)
    ctx = f"seed={seed} kind={kind} kill_after={kill_after} nth={nth}"
    acked: dict[AckedKey, Ack] = {}
    round_no = 0
    while True:
        out = await run_writer(root, "ASYNC_FLUSH", seed, round_no, ctx=ctx, kill_after=kill_after)
        add_acks(acked, out.acks, ctx)
        round_no += 1
        if kind != "commitlog" or commit_log_gets_cut(root):
            break
        # Killed between filling a segment and creating the next: the log ends on a file's end,
        # and recovery has no file to cut. Kill another writer, somewhere else.
        assert round_no < 5, f"{ctx}: {round_no} kills all left the log on a segment's end"
    # The next writer's recovery cuts the files back to what it keeps (zero_from) and dies there.
    out = await run_writer(
        root, "ASYNC_FLUSH", seed, round_no, ctx=ctx, die_at=f"shrink:{FILE_BYTES[kind]}:{nth}"
    )
    assert not out.ready and not out.acks, f"{ctx}: the writer got past recovery"
    assert short_files(root, kind), f"{ctx}: the writer died without leaving a short file"
    await recover_and_check(root, "ASYNC_FLUSH", acked, ctx)


@pytest.mark.parametrize("flush", ["SYNC_FLUSH", "ASYNC_FLUSH"])
async def test_kill_while_a_record_is_written(tmp_path: Path, flush: FlushType) -> None:
    # The body CRC covers only the body, so a record whose properties were cut short is not
    # caught by recovery: the CommitLog must never let one look whole.
    seed = crash_seed()
    nth = random.Random(seed).randint(20, 400)
    root = tmp_path / "store"
    ctx = f"seed={seed} flush={flush} nth={nth}"
    acked: dict[AckedKey, Ack] = {}
    out = await run_writer(root, flush, seed, 0, ctx=ctx, die_at=f"tear:0:{nth}")
    add_acks(acked, out.acks, ctx)
    await recover_and_check(root, flush, acked, ctx)


async def test_kill_between_writing_index_entries_and_the_index_header(tmp_path: Path) -> None:
    # An IndexFile's header counts its entries; a key's entry (and its hash slot, in memory)
    # is written before it. Killed in between, the file holds entries the header does not
    # count, and every key the checkpoint counted must still be found.
    seed = crash_seed()
    # Entries of the first index file (two keys a record; it holds 4,000).
    entries = random.Random(seed).randint(1200, 1900) * 2
    root = tmp_path / "store"
    ctx = f"seed={seed} entries={entries}"
    acked: dict[AckedKey, Ack] = {}
    out = await run_writer(root, "SYNC_FLUSH", seed, 0, ctx=ctx, die_at=f"index:0:{entries}")
    add_acks(acked, out.acks, ctx)
    cp = CheckpointFile(root / "checkpoint").read()
    # Else recovery would rebuild the first index file whole, and the kill would test nothing.
    assert cp is not None and cp.logics_flushed > 0, f"{ctx}: no checkpoint progress: {cp}"
    await recover_and_check(root, "SYNC_FLUSH", acked, ctx)


@pytest.mark.parametrize("phase", ["torn-header", "torn-slot"])
async def test_kill_inside_an_index_header_or_slot_write(tmp_path: Path, phase: str) -> None:
    # A torn header once read as an empty file (count 0), losing every key in it; torn hash
    # slots hide every older key chained behind them. Recovery must trust only what the
    # checkpoint recorded and rebuild the rest.
    seed = crash_seed()
    rng = random.Random(seed)
    # torn-header: late in the first index file, so that a checkpoint has covered many
    # records: the header write once it counts this many entries (two keys a record).
    # torn-slot: the slots of the first or second full index file (4,000 entries each).
    nth = rng.randint(1200, 1900) * 2 if phase == "torn-header" else rng.randint(1, 2)
    root = tmp_path / "store"
    ctx = f"seed={seed} phase={phase} nth={nth}"
    acked: dict[AckedKey, Ack] = {}
    out = await run_writer(root, "SYNC_FLUSH", seed, 0, ctx=ctx, die_at=f"{phase}:0:{nth}")
    add_acks(acked, out.acks, ctx)
    cp = CheckpointFile(root / "checkpoint").read()
    assert cp is not None and cp.index is not None and cp.index.header[5] > 1, (
        f"{ctx}: no index progress in the checkpoint: {cp}"
    )
    await recover_and_check(root, "SYNC_FLUSH", acked, ctx)
