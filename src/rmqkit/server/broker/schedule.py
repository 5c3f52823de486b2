"""Delivering delayed messages when they are due (RocketMQ `ScheduleMessageService`).

Each delay level is one queue of SCHEDULE_TOPIC_XXXX whose messages fall due in the order they
were stored, so the service only ever looks at the head of each queue: it moves every due head
message back to its real topic and queue (REAL_TOPIC / REAL_QID, the DELAY property dropped),
then sleeps until the earliest head is due or a new delayed message arrives. Progress per level
is kept in `config/delayOffset.json` (RocketMQ's layout), so a restart neither loses nor repeats
more than what was in flight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import Enum, auto
from pathlib import Path
from typing import TYPE_CHECKING

from rmqkit.common.names import SCHEDULE_TOPIC
from rmqkit.common.properties import Prop, encode_properties
from rmqkit.errors import CorruptRecordError
from rmqkit.protocol.record import StoredMessage, decode_record
from rmqkit.protocol.route import BodyError
from rmqkit.protocol.sync_bodies import delay_offsets
from rmqkit.server.broker.json_file import load_json, save_json
from rmqkit.server.service import Service
from rmqkit.server.store import FileMessageStore, MessageToStore, PutResult, PutStatus
from rmqkit.server.store.dispatch import DispatchRequest
from rmqkit.server.store.results import STORED

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker

log = logging.getLogger("rmqkit.broker.schedule")

MAX_PER_PASS = 1024
"""Messages moved per level per pass before the event loop gets a turn."""


class ScheduleService(Service):
    name = "schedule"

    def __init__(self, broker: Broker, path: Path, *, save_every_s: float = 10.0) -> None:
        super().__init__(interval_s=1.0)
        self.broker = broker
        self.path = path
        self._save_every_s = save_every_s
        """`flushDelayOffsetInterval`: after a crash, delivery starts again from the progress
        written last, so up to this much of it is delivered twice (none lost), as in RocketMQ."""
        self._saved_at = -save_every_s
        self.offsets: dict[int, int] = {}
        """Delay level -> next offset of its schedule queue to deliver."""
        self.delivered = 0
        self._dirty = False
        self._sleep_s = 1.0

    def load(self) -> None:
        """Read the file; a file Java would not read is left out, and the log says why."""
        data = load_json(self.path) or {}
        try:
            self.offsets = delay_offsets(data)
        except BodyError as exc:
            log.error("delayOffset.json: %s; delayed messages are delivered from the start", exc)

    def persist(self) -> None:
        if self._dirty:
            self._save()

    def _save(self) -> None:
        save_json(self.path, {"offsetTable": {str(k): v for k, v in self.offsets.items()}})
        self._dirty = False
        self._saved_at = time.monotonic()

    def replace_offsets(self, offsets: dict[int, int]) -> None:
        """Take a master's delivery progress and write it (slave sync), so that a slave that
        takes over delivers from where its master was."""
        self.offsets = dict(offsets)
        self._save()

    def on_dispatch(self, run: list[DispatchRequest]) -> None:
        """Store listener: a new delayed message may be due before the current sleep ends.

        Only a running service (a master's) listens: a slave stores replicated delayed messages
        and leaves their delivery to its master.
        """
        if self.running and any(req.topic == SCHEDULE_TOPIC for req in run):
            self.wakeup()

    async def _run_once(self) -> None:
        store = self.broker.store
        now = int(time.time() * 1000)
        next_due = now + int(self.interval_s * 1000)
        for level in range(1, len(store.settings.delay_levels_ms) + 1):
            cq = store.find_consume_queue(SCHEDULE_TOPIC, level - 1)
            if cq is None:
                continue
            offset = max(self.offsets.get(level, 0), cq.min_offset)
            moved = 0
            while offset < cq.max_offset and moved < MAX_PER_PASS:
                entry = cq.entry(offset)
                if entry is None:
                    offset += 1
                    continue
                phys, size, due = entry
                if due > now:
                    next_due = min(next_due, due)
                    break
                if not await self._deliver(phys, size, level):
                    next_due = now + 1000  # the store refused: try again in a second
                    break
                offset += 1
                moved += 1
            if offset != self.offsets.get(level, 0):
                self.offsets[level] = offset
                self._dirty = True
            if moved >= MAX_PER_PASS:
                next_due = now
        if time.monotonic() - self._saved_at >= self._save_every_s:
            self.persist()
        self._sleep_s = max(0.0, (next_due - int(time.time() * 1000)) / 1000)

    async def _wait(self, interval_s: float) -> None:
        await super()._wait(min(interval_s, self._sleep_s))

    async def _deliver(self, phys: int, size: int, level: int) -> bool:
        store = self.broker.store
        what = f"delayed message (level {level})"
        msg = real_message(store, phys, size, what, _clear_delay)
        moved = (
            Moved.SKIPPED if msg is None else put_outcome(await store.put_message(msg), what, phys)
        )
        if moved is Moved.RETRY:
            return False
        if moved is Moved.DONE:
            self.delivered += 1
            self.broker.stats.put(1)
        return True

    async def _on_stop(self) -> None:
        self.persist()


class Moved(Enum):
    """What became of a due message (delay level or timer) that was to go to its real topic."""

    DONE = auto()
    SKIPPED = auto()
    """Gone, corrupt, without a real topic, or refused for good by the store: logged, dropped."""
    RETRY = auto()
    """The store could not take it now (full disk, stopping): try again later."""


_FOR_GOOD = frozenset({PutStatus.MESSAGE_ILLEGAL, PutStatus.PROPERTIES_SIZE_EXCEEDED})
_STORED = STORED


def _clear_delay(m: StoredMessage, props: dict[str, str]) -> None:
    # RocketMQ's ScheduleMessageService clears these three when a level falls due.
    for key in (Prop.DELAY_TIME_LEVEL, Prop.TIMER_DELIVER_MS, Prop.TIMER_DELAY_SEC):
        props.pop(key, None)


def real_message(
    store: FileMessageStore,
    phys: int,
    size: int,
    what: str,
    edit: Callable[[StoredMessage, dict[str, str]], None],
    *,
    expect: tuple[str, int] | None = None,
) -> MessageToStore | None:
    """The copy of the record at `phys` for its REAL_TOPIC / REAL_QID (both keys dropped), or
    None (logged) when the record is gone, corrupt or has no real topic.

    `edit` adjusts the other properties first. The copy keeps body, flag, sys flag, born time and
    host and reconsume times, and does not wait for a flush (RocketMQ sets waitStoreMsgOK false).
    With `expect` (topic, queue offset), a record that is not that entry is skipped: the index
    pointing at it outlived a CommitLog cut back by recovery.
    """
    rec = store.commit_log.read(phys, size)
    if rec is None:
        log.warning("%s at %d is gone; skipping it", what, phys)
        return None
    try:
        m = decode_record(rec, inflate=False)
    except CorruptRecordError as exc:
        log.error("%s at %d is corrupt (%s); skipping it", what, phys, exc)
        return None
    if expect is not None and (m.topic, m.queue_offset) != expect:
        log.error("%s at %d is %s #%d, not %s #%d; skipping it", what, phys, m.topic,
                  m.queue_offset, *expect)  # fmt: skip
        return None
    props = dict(m.properties)
    topic = props.pop(Prop.REAL_TOPIC, None)
    qid = props.pop(Prop.REAL_QUEUE_ID, None)
    if topic is None or qid is None or not qid.lstrip("-").isdigit():
        log.error("%s at %d has no real topic; skipping it", what, phys)
        return None
    edit(m, props)
    return MessageToStore(
        topic, int(qid), m.body, encode_properties(props), m.flag, m.sys_flag,
        m.born_timestamp, m.born_host, m.reconsume_times, m.prepared_transaction_offset,
        m.body_crc, False,
    )  # fmt: skip


def put_outcome(r: PutResult, what: str, phys: int, *, quiet: bool = False) -> Moved:
    """What the store's answer `r` to the copy of the record at `phys` means for it.

    A refusal for good is logged; one for now too, unless `quiet` (a caller that had the same
    answer for an earlier message of the pass has said it already).
    """
    if r.status in _STORED:
        return Moved.DONE
    if r.status in _FOR_GOOD:
        log.error("%s at %d refused by the store for good: %s %s", what, phys, r.status, r.remark)
        return Moved.SKIPPED
    if not quiet:
        log.warning("%s at %d not delivered yet: %s %s", what, phys, r.status, r.remark)
    return Moved.RETRY


def decode_delay_offsets(data: dict[str, object] | None) -> dict[int, int]:
    """The per-level offsets of a delayOffset.json object (admin tools read it)."""
    table = (data or {}).get("offsetTable") or {}
    return {int(k): int(v) for k, v in table.items()} if isinstance(table, dict) else {}
