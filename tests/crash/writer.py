"""A store writer for the crash tests: appends under load and reports every acknowledged message.

Run as `python -m tests.crash.writer ROOT FLUSH_TYPE SEED ROUND` from the repository root. It opens
(and so recovers) the store at ROOT, prints `READY <valid_end>`, then keeps `--concurrency` tasks
putting single messages and small batches into several topics and queues until it is killed,
kills itself inside a file-sizing window (`--die-at`, see `arm_fault`), or `--max-seconds` pass
(a safety net so no writer outlives a failed test). After each acknowledged put it writes one
line per message straight to fd 1 with `os.write`:

    ACK topic queue_id queue_offset physical_offset body_length body_crc32 uid

A line under PIPE_BUF bytes is written to a pipe atomically, and bytes in the pipe survive the
writer's SIGKILL, so the test sees every acknowledgement the writer made and nothing else.

The helpers that make and check message bodies and the store settings are shared with the tests.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import itertools
import mmap
import os
import random
import signal
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rmqkit.common.properties import encode_properties
from rmqkit.protocol import record
from rmqkit.protocol.record import record_size
from rmqkit.server.store import (
    FileMessageStore,
    MessageToStore,
    PutStatus,
    StoreSettings,
    commit_log,
    index_file,
)
from rmqkit.server.store.index_file import IndexFile
from rmqkit.server.store.mapped_file import MappedFile

FlushType = Literal["SYNC_FLUSH", "ASYNC_FLUSH"]

TOPICS = ("CrashOrders", "CrashAudit", "CrashEvents")
QUEUES = 4
SEGMENT_BYTES = 256 * 1024
"""Small CommitLog segments, so a test run rolls through many of them."""
CQ_FILE_ENTRIES = 500
MAX_BODY_BYTES = 64 * 1024
HASH_SLOTS = 1000
INDEX_ENTRIES = 4000
CQ_FILE_BYTES = 20 * CQ_FILE_ENTRIES
INDEX_FILE_BYTES = 40 + 4 * HASH_SLOTS + 20 * INDEX_ENTRIES


def store_settings(root: Path, flush: FlushType, *, index_process: bool = True) -> StoreSettings:
    """Small files everywhere (CommitLog, ConsumeQueue and index all roll) and quick flushes.

    `index_process=False` builds the index on the event loop, in this process, where
    `arm_fault` can reach its writes; otherwise the index builder dies with the writer."""
    return StoreSettings(
        message_index_process=index_process,
        store_path_root_dir=root,
        mapped_file_size_commit_log_bytes=SEGMENT_BYTES,
        mapped_file_size_consume_queue_bytes=CQ_FILE_BYTES,
        max_message_size_bytes=MAX_BODY_BYTES,
        max_hash_slot_num=HASH_SLOTS,
        max_index_num=INDEX_ENTRIES,
        flush_disk_type=flush,
        # ASYNC_FLUSH: flush and checkpoint often, so kills land both before and after them.
        flush_interval_commit_log_ms=20,
        flush_commit_log_least_pages=4,
        flush_interval_consume_queue_ms=50,
    )


def open_store(root: Path, flush: FlushType, *, index_process: bool = True) -> FileMessageStore:
    """A store at `root` whose retention never sees a full disk (the host's disk is not ours)."""
    return FileMessageStore(
        store_settings(root, flush, index_process=index_process), disk_usage=lambda: 0.0
    )


def make_body(uid: str, size: int) -> bytes:
    """`uid|` then pseudo-random bytes derived from the uid: any body can be checked alone."""
    head = uid.encode("ascii") + b"|"
    return head + random.Random(uid).randbytes(max(0, size - len(head)))


def body_uid(body: bytes) -> str | None:
    """The uid a body was made from, or None when it is not exactly `make_body(uid, len)`."""
    uid, sep, _ = body.partition(b"|")
    if not sep:
        return None
    try:
        text = uid.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if make_body(text, len(body)) == body else None


def key_of(uid: str) -> str:
    """The KEYS value a message carries (the index is queried with it after recovery)."""
    return f"key-{uid}"


def make_message(
    uid: str, topic: str, queue_id: int, size: int, pad_bytes: int = 0
) -> MessageToStore:
    """A message whose body, keys and tag all follow from its uid; `pad_bytes` of extra property
    make the properties, the last part of a record and the one no CRC covers, span pages."""
    props = {"TAGS": f"tag{queue_id}", "KEYS": key_of(uid), "UNIQ_KEY": uid}
    if pad_bytes:
        props["PAD"] = "p" * pad_bytes
    return MessageToStore(topic, queue_id, make_body(uid, size), encode_properties(props))


def stored_size(msg: MessageToStore) -> int:
    """The record size of `msg` in the CommitLog (IPv4 hosts, V1 magic)."""
    return record_size(len(msg.body), len(msg.topic), len(msg.properties.encode("utf-8")))


@dataclass(frozen=True, slots=True)
class Ack:
    """One acknowledged message as the writer reported it."""

    topic: str
    queue_id: int
    queue_offset: int
    physical_offset: int
    body_length: int
    body_crc: int
    uid: str

    def line(self) -> str:
        return (
            f"ACK {self.topic} {self.queue_id} {self.queue_offset} {self.physical_offset} "
            f"{self.body_length} {self.body_crc} {self.uid}\n"
        )

    @classmethod
    def parse(cls, line: str) -> Ack:
        _, topic, qid, qoff, phys, blen, crc, uid = line.split()
        return cls(topic, int(qid), int(qoff), int(phys), int(blen), int(crc), uid)


def acks_of(msgs: list[MessageToStore], first_phys: int, first_qoff: int) -> list[Ack]:
    """The acks of a batch stored contiguously from `first_phys` (one queue, dense offsets)."""
    out = []
    phys = first_phys
    for i, m in enumerate(msgs):
        uid = m.properties.split("UNIQ_KEY\x01", 1)[1].split("\x02", 1)[0]
        out.append(
            Ack(m.topic, m.queue_id, first_qoff + i, phys, len(m.body), zlib.crc32(m.body), uid)
        )
        phys += stored_size(m)
    return out


def body_size(rng: random.Random, batch: bool) -> int:
    """Mostly small bodies, some of several KiB, a few large enough to fill a segment fast."""
    r = rng.random()
    if batch or r < 0.7:
        return rng.randint(16, 1500)
    if r < 0.97:
        return rng.randint(1500, 12_000)
    return rng.randint(12_000, 48_000)


def emit(text: str) -> None:
    os.write(1, text.encode("ascii"))


async def put_forever(
    store: FileMessageStore, seed: int, round_no: int, worker: int, deadline: float
) -> None:
    rng = random.Random(f"{seed}/{round_no}/{worker}")
    counter = itertools.count()
    while time.monotonic() < deadline:
        topic = rng.choice(TOPICS)
        qid = rng.randrange(QUEUES)
        n = 1 if rng.random() < 0.75 else rng.randint(2, 6)
        # Several messages go in as a batch, or as the sends of one read (put_each: a record
        # each, written together, each with its own result).
        each = n > 1 and rng.random() < 0.5
        msgs = [
            make_message(
                f"r{round_no}w{worker}n{next(counter)}",
                topic,
                qid,
                body_size(rng, n > 1 and not each),
                0 if rng.random() < 0.8 else rng.randint(100, 6000),
            )
            for _ in range(n)
        ]
        if each:
            results = await store.put_each(msgs)
        else:
            results = [await (store.put_message(msgs[0]) if n == 1 else store.put_messages(msgs))]
        for i, r in enumerate(results):
            if r.status is PutStatus.OK:
                acked = msgs[i : i + 1] if each else msgs
                emit("".join(a.line() for a in acks_of(acked, r.physical_offset, r.queue_offset)))
            elif r.status is not PutStatus.FLUSH_DISK_TIMEOUT:  # slow disk: stored, not acked
                emit(f"FAIL {r.status.name} {r.remark!r}\n")
        # Under ASYNC_FLUSH a put never suspends; a broker would read the network here.
        await asyncio.sleep(0)


async def run(args: argparse.Namespace) -> None:
    # A fault armed here must find the index's writes here.
    store = open_store(Path(args.root), args.flush, index_process=not args.die_at)
    await store.start()
    assert store.recovery is not None
    emit(f"READY {store.recovery.valid_end}\n")
    deadline = time.monotonic() + args.max_seconds
    await asyncio.gather(
        *(put_forever(store, args.seed, args.round, w, deadline) for w in range(args.concurrency))
    )
    await store.stop()
    emit("DONE\n")


def arm_fault(spec: str) -> None:
    """SIGKILL this process at one precise point, given as PHASE:SIZE:N.

    `create:SIZE:N`: at the Nth new SIZE-byte file, after it was created and before it is sized.
    `shrink:SIZE:N`: at the Nth `zero_from` of a SIZE-byte file, between its shrink and regrow.
    `tear:0:N`: once the Nth record is written but for the second half of its properties, and
    before the size and magic of its append's first record: what a kill in the middle of
    copying a record leaves behind (packed into the mapping under ASYNC_FLUSH, copied in by
    `pwrite` under SYNC_FLUSH).
    `index:0:N`: at the first write of an IndexFile header that counts N entries or more, when
    the entries it would count are already written (their hash slots are in memory). (A header
    is written once per dispatch run, which under load holds many records: counting writes
    would land late.)
    `torn-header:0:N`: inside that header write, as a kill inside `struct.pack_into` leaves
    it: the 40 bytes zero-filled and only the first three fields written.
    `torn-slot:0:N`: inside the Nth write of an IndexFile's hash slots into it (when it is full,
    or the store stops), half of them written.
    """
    phase, size_s, n_s = spec.split(":")
    size, left = int(size_s), [int(n_s)]
    if phase == "tear":
        arm_tear(left)
        return
    if phase == "index":
        arm_index_header(left[0])
        return
    if phase == "torn-header":
        arm_torn_index_header(left[0])
        return
    if phase == "torn-slot":
        arm_torn_index_slots(left)
        return
    real = os.ftruncate

    def ftruncate(fd: int, length: int) -> None:
        current = os.fstat(fd).st_size
        if (phase == "create" and current == 0 and length == size) or (
            phase == "shrink" and current == size and length < size
        ):
            left[0] -= 1
            if left[0] == 0:
                if phase == "shrink":
                    real(fd, length)
                os.kill(os.getpid(), signal.SIGKILL)
        real(fd, length)

    os.ftruncate = ftruncate


def arm_tear(left: list[int]) -> None:
    real = record.encode_record_into
    real_write = MappedFile.write
    torn = [False]

    def encode_record_into(*args: Any) -> int:
        left[0] -= 1
        if left[0] == 0:
            props_b = args[4]
            half = len(props_b) // 2
            torn_props = props_b[:half] + bytes(len(props_b) - half)
            size = real(*args[:4], torn_props, *args[5:])
            if isinstance(args[0], mmap.mmap):  # packed into the mapping: it is in the file
                os.kill(os.getpid(), signal.SIGKILL)
            torn[0] = True  # packed into the scratch buffer: dies once it is copied in
            return size
        return real(*args)

    def write(self: MappedFile, pos: int, data: Any) -> None:
        real_write(self, pos, data)
        if torn[0]:  # the records are in the file, the first one's size and magic are not
            os.kill(os.getpid(), signal.SIGKILL)

    # The CommitLog's own reference: it imported the function by name.
    commit_log.encode_record_into = encode_record_into  # type: ignore[attr-defined]
    MappedFile.write = write  # type: ignore[method-assign]


def arm_index_header(entries: int) -> None:
    real = IndexFile._write_header

    def write_header(self: IndexFile) -> None:
        if self.count >= entries:
            os.kill(os.getpid(), signal.SIGKILL)
        real(self)

    IndexFile._write_header = write_header  # type: ignore[method-assign]


def arm_torn_index_header(entries: int) -> None:
    real = IndexFile._write_header

    def write_header(self: IndexFile) -> None:
        if self.count >= entries:
            new = index_file.HEADER.pack(*self.header)
            self.file.mm[: len(new)] = bytes(len(new))
            self.file.mm[:24] = new[:24]
            os.kill(os.getpid(), signal.SIGKILL)
        real(self)

    IndexFile._write_header = write_header  # type: ignore[method-assign]


def arm_torn_index_slots(left: list[int]) -> None:
    """Die inside the Nth copy of a slot table into its file, half of it copied (a kill in
    the middle of that memcpy)."""
    real = index_file.write_slots

    def write_slots(mm: mmap.mmap, at: int, slots: array.array[int]) -> None:
        left[0] -= 1
        if left[0] == 0:
            real(mm, at, slots[: len(slots) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        real(mm, at, slots)

    index_file.write_slots = write_slots


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root")
    p.add_argument("flush", choices=["SYNC_FLUSH", "ASYNC_FLUSH"])
    p.add_argument("seed", type=int)
    p.add_argument("round", type=int)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--die-at", help="PHASE:SIZE:N, see arm_fault")
    args = p.parse_args(argv)
    if args.die_at:
        arm_fault(args.die_at)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
