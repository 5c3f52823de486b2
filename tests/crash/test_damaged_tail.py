"""Recovery from a CommitLog damaged on purpose: torn, garbled or followed by garbage.

Each test fills a store (several topics and queues, singles and batches, a few segments), stops
it, then makes it look crashed: the abort file is back and the checkpoint says only an earlier
prefix was flushed (recovery trusts everything before `commit_log_flushed` and CRC-checks from
there on, so the damage is put past it). Then it damages the tail and restarts: the store must
cut at the last whole valid record, serve nothing after it, rebuild its consume queues and index
to agree with the log, take new appends at the cut, and keep all that across a clean restart.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rmqkit.protocol.record import HEAD_V4, decode_record
from rmqkit.server.store.checkpoint import Checkpoint, CheckpointFile
from rmqkit.server.store.mapped_file import file_name
from tests.crash.checks import (
    append_everywhere,
    check_acked,
    check_keys,
    check_lost,
    check_store,
)
from tests.crash.harness import crash_seed
from tests.crash.writer import (
    QUEUES,
    SEGMENT_BYTES,
    TOPICS,
    Ack,
    acks_of,
    make_message,
    open_store,
)

pytestmark = pytest.mark.crash

PUTS = 320
"""About 1.2 MiB of records (some puts are batches): four or five CommitLog segments."""


@dataclass(slots=True)
class Filled:
    """A stopped store and what it acknowledged, in CommitLog order."""

    root: Path
    acks: list[Ack]

    @property
    def end(self) -> int:
        last = self.acks[-1]
        return last.physical_offset + self.record_size(last)

    def record_size(self, a: Ack) -> int:
        path, pos = self.locate(a.physical_offset)
        with path.open("rb") as f:
            f.seek(pos)
            return int.from_bytes(f.read(4), "big")

    def locate(self, phys: int) -> tuple[Path, int]:
        """The segment file holding `phys`, and the position in it."""
        start = phys - phys % SEGMENT_BYTES
        return self.root / "commitlog" / file_name(start), phys - start

    def read(self, phys: int, n: int) -> bytes:
        path, pos = self.locate(phys)
        with path.open("rb") as f:
            f.seek(pos)
            return f.read(n)

    def write(self, phys: int, data: bytes) -> None:
        """Overwrite bytes in place (within one segment)."""
        path, pos = self.locate(phys)
        assert pos + len(data) <= SEGMENT_BYTES
        with path.open("r+b") as f:
            f.seek(pos)
            f.write(data)

    def body_span(self, a: Ack) -> tuple[int, int]:
        """CommitLog offsets of the body of the record of `a`: [start, end)."""
        start = a.physical_offset + HEAD_V4.size
        return start, start + a.body_length

    def fake_crash(self, flushed: int, logics: int) -> None:
        """Make a clean stop look like a crash whose last checkpoint was at these offsets."""
        (self.root / "abort").touch()
        CheckpointFile(self.root / "checkpoint").write(Checkpoint(1, 1, 1, flushed, logics))


async def fill(root: Path, rng: random.Random) -> Filled:
    """Make PUTS puts (some of batches) from 8 concurrent producers, then stop."""
    store = open_store(root, "ASYNC_FLUSH")
    await store.start()
    acks: list[Ack] = []
    count = iter(range(PUTS))

    async def producer(p: int) -> None:
        for i in count:
            topic, qid = rng.choice(TOPICS), rng.randrange(QUEUES)
            n = 1 if rng.random() < 0.8 else rng.randint(2, 5)
            big = n == 1 and rng.random() < 0.1
            msgs = [
                make_message(f"f{p}n{i}m{j}", topic, qid, rng.randint(8, 20_000 if big else 4000))
                for j in range(n)
            ]
            r = await (store.put_messages(msgs) if n > 1 else store.put_message(msgs[0]))
            assert r.ok, r
            acks.extend(acks_of(msgs, r.physical_offset, r.queue_offset))
            await asyncio.sleep(0)

    await asyncio.gather(*(producer(p) for p in range(8)))
    await store.stop()
    acks.sort(key=lambda a: a.physical_offset)
    assert acks[-1].physical_offset > 3 * SEGMENT_BYTES, "the fill should cross segments"
    return Filled(root, acks)


def flip(data: bytes, rng: random.Random) -> bytes:
    """`data` with every byte changed (XOR with a non-zero byte)."""
    return bytes(b ^ rng.randint(1, 255) for b in data)


@dataclass(slots=True)
class Expect:
    """Where recovery must cut, and whether it must report garbage there."""

    valid_end: int
    garbage: bool | None
    """True: `truncated_from == valid_end`; False: None; None: either."""
    full_rescan: bool = False


Damage = Callable[[Filled, random.Random], Expect]


def torn_last_record_zeroed(f: Filled, rng: random.Random) -> Expect:
    # The last record lost its second half, as a page that never reached the disk would leave.
    # The cut is made before its properties: the body CRC covers only the body (RocketMQ's
    # format), so a record torn inside its properties alone cannot be told from a whole one. A
    # killed process cannot leave one (the CommitLog writes a record's size and magic last, see
    # test_kill_while_a_record_is_written); damage from outside can.
    last = f.acks[-1]
    size = f.record_size(last)
    msg = decode_record(f.read(last.physical_offset, size), check_crc=True)
    props_at = HEAD_V4.size + len(msg.body) + 1 + len(msg.topic) + 2
    cut = rng.randrange(1, props_at)
    f.write(last.physical_offset + cut, bytes(size - cut))
    return Expect(last.physical_offset, None if cut < 8 else True)


def torn_last_record_garbled(f: Filled, rng: random.Random) -> Expect:
    last = f.acks[-1]
    size = f.record_size(last)
    body_start, body_end = f.body_span(last)
    cut = rng.randrange(body_start, body_end) - last.physical_offset
    f.write(last.physical_offset + cut, flip(f.read(last.physical_offset + cut, size - cut), rng))
    return Expect(last.physical_offset, True)


def last_record_without_size_and_magic(f: Filled, rng: random.Random) -> Expect:
    # What a process killed while the CommitLog copies a record in leaves: any part of it but
    # its first 8 bytes (written last). Zeros there read as the end of the log.
    last = f.acks[-1]
    size = f.record_size(last)
    rec = bytearray(f.read(last.physical_offset, size))
    rec[:8] = bytes(8)
    keep = rng.randint(8, size)
    f.write(last.physical_offset, bytes(rec[:keep]) + bytes(size - keep))
    return Expect(last.physical_offset, False)


def flipped_body_byte(f: Filled, rng: random.Random) -> Expect:
    victim = f.acks[rng.randrange(len(f.acks) // 2 + 1, len(f.acks) - 1)]
    start, end = f.body_span(victim)
    at = rng.randrange(start, end)
    f.write(at, flip(f.read(at, 1), rng))
    return Expect(victim.physical_offset, True)


def garbage_after_end(f: Filled, rng: random.Random) -> Expect:
    room = SEGMENT_BYTES - f.end % SEGMENT_BYTES
    junk = rng.randbytes(rng.randint(8, min(4000, room)))
    f.write(f.end, junk)
    return Expect(f.end, None if not any(junk[:8]) else True)


def record_copy_after_end(f: Filled, rng: random.Random) -> Expect:
    # A plausible record (right magic and size) whose body does not match its CRC.
    last = f.acks[-1]
    size = f.record_size(last)
    if f.end % SEGMENT_BYTES + size + 8 > SEGMENT_BYTES:
        return garbage_after_end(f, rng)
    copy = bytearray(f.read(last.physical_offset, size))
    copy[HEAD_V4.size + rng.randrange(last.body_length)] ^= 0xFF
    f.write(f.end, bytes(copy))
    return Expect(f.end, True)


def garbage_after_zeros(f: Filled, rng: random.Random) -> Expect:
    # Zeros read as "nothing written yet", so the scan ends there; what follows must still go.
    room = SEGMENT_BYTES - f.end % SEGMENT_BYTES
    gap = rng.randint(8, 64)
    junk = rng.randbytes(rng.randint(1, min(2000, room - gap)))
    f.write(f.end + gap, junk)
    return Expect(f.end, False)


def garbage_segment_after_last(f: Filled, rng: random.Random) -> Expect:
    last_start = f.end - f.end % SEGMENT_BYTES
    (f.root / "commitlog" / file_name(last_start + SEGMENT_BYTES)).write_bytes(
        rng.randbytes(SEGMENT_BYTES)
    )
    return Expect(f.end, False)


def checkpoint_deleted(f: Filled, rng: random.Random) -> Expect:
    (f.root / "checkpoint").unlink()
    return Expect(f.end, False, full_rescan=True)


def checkpoint_torn(f: Filled, rng: random.Random) -> Expect:
    path = f.root / "checkpoint"
    data = bytearray(path.read_bytes())
    data[rng.randrange(60)] ^= 0x5A
    path.write_bytes(bytes(data))
    return Expect(f.end, False, full_rescan=True)


def checkpoint_and_derived_files_deleted(f: Filled, rng: random.Random) -> Expect:
    (f.root / "checkpoint").unlink()
    shutil.rmtree(f.root / "consumequeue")
    shutil.rmtree(f.root / "index")
    return Expect(f.end, False, full_rescan=True)


def checkpoint_deleted_and_tail_torn(f: Filled, rng: random.Random) -> Expect:
    expect = torn_last_record_garbled(f, rng)
    (f.root / "checkpoint").unlink()
    return Expect(expect.valid_end, True, full_rescan=True)


DAMAGES: list[Damage] = [
    torn_last_record_zeroed,
    torn_last_record_garbled,
    last_record_without_size_and_magic,
    flipped_body_byte,
    garbage_after_end,
    record_copy_after_end,
    garbage_after_zeros,
    garbage_segment_after_last,
    checkpoint_deleted,
    checkpoint_torn,
    checkpoint_and_derived_files_deleted,
    checkpoint_deleted_and_tail_torn,
]


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.__name__)
async def test_recovery_cuts_a_damaged_tail_at_the_last_valid_record(
    tmp_path: Path, damage: Damage
) -> None:
    seed = crash_seed()
    rng = random.Random(seed)
    f = await fill(tmp_path / "store", rng)
    n = len(f.acks)
    # The checkpoint: CommitLog flushed up to some record in the first half, consume queues
    # and index up to an earlier one (they are flushed after the log, so they lag).
    flushed_i = rng.randrange(n // 4, n // 2)
    logics_i = rng.randrange(0, flushed_i + 1)
    flushed, logics = f.acks[flushed_i].physical_offset, f.acks[logics_i].physical_offset
    f.fake_crash(flushed, logics)
    expect = damage(f, rng)
    kept = [a for a in f.acks if a.physical_offset < expect.valid_end]
    lost = [a for a in f.acks if a.physical_offset >= expect.valid_end]
    ctx = f"seed={seed} damage={damage.__name__} checkpoint=({flushed}, {logics}) {expect}"

    store = open_store(f.root, "SYNC_FLUSH")
    await store.start()
    try:
        report = store.recovery
        assert report is not None and report.crashed, ctx
        ctx = f"{ctx} {report}"
        assert report.valid_end == expect.valid_end, ctx
        if expect.garbage is not None:
            want = expect.valid_end if expect.garbage else None
            assert report.truncated_from == want, ctx
        if expect.full_rescan:
            assert report.redispatch_from == 0, ctx
            assert report.records_checked == len(kept), ctx
        else:
            assert report.redispatch_from == logics, ctx
        contents = check_store(store, ctx)
        assert len(contents.by_phys) == len(kept), f"{ctx}: {len(contents.by_phys)} records"
        check_acked(contents, kept, ctx)
        await check_lost(store, lost, ctx)
        await check_keys(store, kept, ctx)
        new = await append_everywhere(store, contents, "new", ctx)
        await check_lost(store, lost, f"{ctx} after appends")
    finally:
        await store.stop()

    ctx = f"{ctx} clean restart"
    store = open_store(f.root, "SYNC_FLUSH")
    await store.start()
    try:
        assert store.recovery is not None and not store.recovery.crashed, ctx
        assert store.recovery.truncated_from is None, ctx
        contents = check_store(store, ctx)
        check_acked(contents, kept + new, ctx)
        await check_lost(store, lost, ctx)
        await check_keys(store, new, ctx)
    finally:
        await store.stop()
