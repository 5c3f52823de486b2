"""What every crash test asserts about a recovered store, whatever broke it.

- `scan_commit_log` reads the segment files from disk, apart from the store, with CRC checks.
- `walk_queues` reads every ConsumeQueue through `get_message` from its first offset to its last.
- `check_store` ties them together: dense queue offsets, CQ entries that match their records, the
  same records reachable both ways, nothing stored past `recovery.valid_end`.
- `check_acked` / `check_keys` / `check_lost`: acknowledged messages are there, with the same
  offsets and body, and found by key; messages cut by recovery are served by no path.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rmqkit.protocol.codes import BLANK_MAGIC
from rmqkit.protocol.record import StoredMessage, decode_record
from rmqkit.server.store import FileMessageStore, GetStatus, PutStatus
from rmqkit.server.store.recovery import RecoveryReport
from tests.crash.writer import QUEUES, SEGMENT_BYTES, TOPICS, Ack, acks_of, body_uid, make_message

QueueKey = tuple[str, int]
PREFIX = struct.Struct(">iI")
FAR_FUTURE_MS = 2**62


@dataclass(slots=True)
class StoreContents:
    """The records of a recovered store, by queue (index = queue offset) and by CommitLog offset."""

    report: RecoveryReport
    queues: dict[QueueKey, list[StoredMessage]] = field(default_factory=dict)
    by_phys: dict[int, StoredMessage] = field(default_factory=dict)

    def next_offset(self, key: QueueKey) -> int:
        return len(self.queues.get(key, ()))


def scan_commit_log(commit_log_dir: Path, end: int, ctx: str) -> dict[int, StoredMessage]:
    """Every record below `end`, decoded with CRC checks; asserts only zeros follow `end`."""
    out: dict[int, StoredMessage] = {}
    files = sorted(p for p in commit_log_dir.iterdir() if p.name.isdigit())
    for p in files:
        start = int(p.name)
        data = p.read_bytes()
        assert len(data) == SEGMENT_BYTES, f"{ctx}: {p.name} is {len(data)} bytes"
        pos = 0
        while start + pos < end and pos + PREFIX.size <= len(data):
            size, magic = PREFIX.unpack_from(data, pos)
            if magic == BLANK_MAGIC:
                assert size == len(data) - pos, f"{ctx}: blank of {size} at {start + pos}"
                pos = len(data)
                break
            msg = decode_record(data, pos, check_crc=True)
            assert msg.commit_log_offset == start + pos, (
                f"{ctx}: record at {start + pos} says it is at {msg.commit_log_offset}"
            )
            out[start + pos] = msg
            pos += msg.store_size
        if start < end:  # a segment ends in a blank tail, the last one at the valid end
            assert pos == len(data) or start + pos == end, (
                f"{ctx}: records of {p.name} stop at {start + pos}, valid end {end}"
            )
        tail_from = max(0, min(len(data), end - start))
        assert not any(data[tail_from:]), (
            f"{ctx}: non-zero bytes past the valid end {end} in segment {p.name}"
        )
    return out


def walk_queues(store: FileMessageStore, ctx: str) -> dict[QueueKey, list[StoredMessage]]:
    """Read every queue whole through `get_message`; each record must decode with a good CRC."""
    out: dict[QueueKey, list[StoredMessage]] = {}
    for topic, qs in sorted(store.consume_queues.by_topic.items()):
        for qid, cq in sorted(qs.items()):
            lo, hi = store.get_min_offset(topic, qid), store.get_max_offset(topic, qid)
            where = f"{ctx}: {topic}-{qid}"
            assert lo == 0, f"{where}: min offset {lo} (nothing was ever deleted)"
            msgs: list[StoredMessage] = []
            off = 0
            while off < hi:
                g = store.get_message(topic, qid, off, 32)
                assert g.status is GetStatus.FOUND, f"{where}: offset {off} of {hi}: {g.status}"
                assert g.queue_offsets == list(range(off, off + len(g.records))), (
                    f"{where}: offsets {g.queue_offsets} from {off}: not dense"
                )
                for rec, qoff in zip(g.records, g.queue_offsets, strict=True):
                    m = decode_record(rec, check_crc=True)
                    assert (m.topic, m.queue_id, m.queue_offset) == (topic, qid, qoff), (
                        f"{where}: entry {qoff} leads to {m.topic}-{m.queue_id} #{m.queue_offset}"
                    )
                    entry = cq.entry(qoff)
                    assert entry is not None
                    assert entry[:2] == (m.commit_log_offset, m.store_size), (
                        f"{where}: entry {qoff} = {entry}, record at {m.commit_log_offset}"
                    )
                    uid = body_uid(m.body)
                    assert uid is not None and uid == m.uniq_key, (
                        f"{where}: entry {qoff} is not a message the writer made: body of "
                        f"{uid}, properties {m.properties!r:.200}"
                    )
                    msgs.append(m)
                off = g.next_begin_offset
            assert len(msgs) == hi, f"{where}: read {len(msgs)} of {hi}"
            past = store.get_message(topic, qid, hi, 1)
            assert past.status is GetStatus.OFFSET_OVERFLOW_ONE, f"{where}: at max: {past.status}"
            out[(topic, qid)] = msgs
    return out


def check_store(store: FileMessageStore, ctx: str) -> StoreContents:
    """The recovered store is self-consistent; returns what it holds."""
    report = store.recovery
    assert report is not None
    ctx = f"{ctx} recovery={report}"
    end = report.valid_end
    assert store.max_physical_offset == end, f"{ctx}: max offset {store.max_physical_offset}"
    assert store.look_message_by_offset(end) is None, f"{ctx}: a record is served at the end"
    scanned = scan_commit_log(store.settings.commit_log_dir, end, ctx)
    queues = walk_queues(store, ctx)
    from_queues = {m.commit_log_offset: m for msgs in queues.values() for m in msgs}
    missing = sorted(set(scanned) - set(from_queues))
    extra = sorted(set(from_queues) - set(scanned))
    assert not missing, f"{ctx}: {len(missing)} records have no CQ entry, first at {missing[:5]}"
    assert not extra, f"{ctx}: {len(extra)} CQ entries lead past the valid log: {extra[:5]}"
    uids = [m.uniq_key for m in scanned.values()]
    assert len(set(uids)) == len(uids), f"{ctx}: a message is stored twice"
    for key, msgs in queues.items():
        # The writer's per-queue offsets follow CommitLog order.
        phys = [m.commit_log_offset for m in msgs]
        assert phys == sorted(phys), f"{ctx}: {key} entries out of CommitLog order"
    return StoreContents(report, queues, scanned)


def check_acked(contents: StoreContents, acks: Iterable[Ack], ctx: str) -> None:
    """Every acknowledged message is stored at the offsets it was acknowledged with, unchanged."""
    for a in acks:
        msgs = contents.queues.get((a.topic, a.queue_id), [])
        where = f"{ctx}: acknowledged {a}"
        assert a.queue_offset < len(msgs), f"{where}: queue holds only {len(msgs)}"
        m = msgs[a.queue_offset]
        assert m.commit_log_offset == a.physical_offset, f"{where}: now at {m.commit_log_offset}"
        assert m.uniq_key == a.uid, f"{where}: another message is there ({m.uniq_key})"
        assert (len(m.body), zlib.crc32(m.body)) == (a.body_length, a.body_crc), f"{where}: body"


async def check_keys(store: FileMessageStore, acks: Iterable[Ack], ctx: str) -> None:
    """The index finds each acknowledged message by its KEYS and by its UNIQ_KEY."""
    for a in acks:
        for key in (f"key-{a.uid}", a.uid):
            r = await store.query_message(a.topic, key, 4, 0, FAR_FUTURE_MS)
            assert r.physical_offsets == [a.physical_offset], (
                f"{ctx}: query {a.topic}#{key} gave {r.physical_offsets}, acknowledged {a}"
            )


async def check_lost(store: FileMessageStore, lost: Iterable[Ack], ctx: str) -> None:
    """Messages recovery cut off are served by no path: offset, queue or key."""
    for a in lost:
        rec = store.look_message_by_offset(a.physical_offset)
        if rec is not None:
            assert decode_record(rec).uniq_key != a.uid, f"{ctx}: cut {a} is still served"
        assert (
            await store.query_message(a.topic, f"key-{a.uid}", 4, 0, FAR_FUTURE_MS)
        ).records == [], f"{ctx}: cut {a} is found by key"


async def append_everywhere(
    store: FileMessageStore, contents: StoreContents, tag: str, ctx: str
) -> list[Ack]:
    """One message into every queue and a batch into one: offsets continue where recovery left."""
    acks: list[Ack] = []
    end = contents.report.valid_end
    for i, (topic, qid) in enumerate((t, q) for t in TOPICS for q in range(QUEUES)):
        msg = make_message(f"{tag}n{i}", topic, qid, 100 + 37 * i)
        r = await store.put_message(msg)
        assert r.status is PutStatus.OK, f"{ctx}: put after recovery: {r}"
        assert r.queue_offset == contents.next_offset((topic, qid)), (
            f"{ctx}: {topic}-{qid} continued at {r.queue_offset}, "
            f"expected {contents.next_offset((topic, qid))}"
        )
        if i == 0:  # lands at the valid end, or at the next segment if it did not fit there
            assert r.physical_offset == end or (
                r.physical_offset > end and r.physical_offset % SEGMENT_BYTES == 0
            ), f"{ctx}: first put after recovery at {r.physical_offset}, valid end {end}"
        acks.extend(acks_of([msg], r.physical_offset, r.queue_offset))
    topic, qid = TOPICS[0], 0
    batch = [make_message(f"{tag}b{j}", topic, qid, 300 + j) for j in range(4)]
    r = await store.put_messages(batch)
    assert r.status is PutStatus.OK, f"{ctx}: batch after recovery: {r}"
    assert r.queue_offset == contents.next_offset((topic, qid)) + 1, f"{ctx}: batch at {r}"
    acks.extend(acks_of(batch, r.physical_offset, r.queue_offset))
    return acks
