"""Delivering timer messages when due (RocketMQ 5's `TimerMessageStore` enqueue and dequeue).

The send path stores a timed message in `rmq_sys_wheel_timer` (`store/timer.py`). This service
reads that queue in order and files each message under its slot in a `TimerIndex` on disk (the
TimerLog and the wheel, `store/timer_index.py`): the broker holds no memory per pending message.
Once a slot has passed, its messages are read into a small in-memory `TimerWheel` and moved to
their real topic, a slot's together (`real_message` and `put_outcome`, shared with the delay
levels), adding TIMER_ENQUEUE_MS and TIMER_DEQUEUE_MS. Progress is kept in
`config/timerCheckpoint.json`, written atomically after every delivery: a restart, even after
SIGKILL, loses nothing and repeats at most what was delivered after the last checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from rmqkit.errors import DiskFullError
from rmqkit.protocol.record import StoredMessage
from rmqkit.server.broker.json_file import load_json, save_json
from rmqkit.server.broker.schedule import Moved, put_outcome, real_message
from rmqkit.server.service import Service
from rmqkit.server.store.dispatch import DispatchRequest, ScanKind, scan_record
from rmqkit.server.store.timer import (
    TIMER_DEQUEUE_MS,
    TIMER_ENQUEUE_MS,
    TIMER_TOPIC,
    Entry,
    TimerCheckpoint,
    TimerWheel,
    timer_out_ms,
)
from rmqkit.server.store.timer_index import TimerIndex
from rmqkit.server.store.timer_log import UNITS_PER_FILE

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker
    from rmqkit.server.store import FileMessageStore, MessageToStore
    from rmqkit.server.store.consume_queue import ConsumeQueue

log = logging.getLogger("rmqkit.broker.timer")

MAX_PER_PASS = 2048
"""Messages read, or delivered, per pass before the event loop gets a turn."""
RETRY_MS = 1000
"""After the store refused a delivery: try again this much later."""
PERSIST_IDLE_S = 1.0
"""Reading progress alone is written at most this often (deliveries are written at once)."""
CLEANUP_S = 60.0
"""How often TimerLog files whose slots have all passed are looked for."""
TPS_WINDOW_S = 10.0
DEFAULT_MAX_DELAY_MS = 3 * 24 * 3600 * 1000
_WHAT = "timer message"


def _now_ms() -> int:
    return int(time.time() * 1000)


class TimerService(Service):
    """Reads the timer queue into the disk index and delivers each slot once it has passed.

    Args:
        broker: gives the store and the stats.
        path: the checkpoint file (`config/timerCheckpoint.json`).
        precision_ms: the slot width (`timerPrecisionMs`).
        data_dir: where `timerlog/` and `timerwheel` go (the store root); default `path`'s
            folder.
        max_delay_ms: `timerMaxDelaySec` in ms; sizes the wheel.
    """

    name = "timer"

    def __init__(
        self,
        broker: Broker,
        path: Path,
        precision_ms: int,
        *,
        data_dir: Path | None = None,
        max_delay_ms: int = DEFAULT_MAX_DELAY_MS,
        units_per_file: int = UNITS_PER_FILE,
    ) -> None:
        super().__init__(interval_s=1.0)
        self.broker = broker
        self.path = path
        self.precision_ms = precision_ms
        self.index = TimerIndex(
            data_dir or path.parent, precision_ms, max_delay_ms, units_per_file=units_per_file
        )
        self.wheel = TimerWheel(precision_ms)
        """The slots that have passed, read from the index and being delivered; its
        `next_offset` is how far the timer queue has been read."""
        self.enqueued = 0
        """Timer messages read into the index since start."""
        self.delivered = 0
        self._sleep_s = 0.0
        self._retry_at = 0
        self._dirty = False
        self._persisted_at = 0.0
        self._cleaned_at = time.monotonic()
        self._opened = False
        self._blocked_logged = False
        self._no_room_logged = False
        self._samples: deque[tuple[float, int, int]] = deque()

    # -- start: open the index ----------------------------------------------------------------

    def load(self) -> None:
        """Open the index from the checkpoint (store started); rebuild it from the timer queue
        when there is nothing to open (first start, an older checkpoint, a lost file)."""
        cp = TimerCheckpoint.decode(load_json(self.path))
        store = self.broker.store
        cq = store.find_consume_queue(TIMER_TOPIC, 0)
        cq_max = cq.max_offset if cq is not None else 0
        restored = self.index.open(cp, _now_ms(), cq_max)
        self._opened = True
        if restored:
            self.wheel.next_offset = max(min(cp.next_offset, cq_max), cq.min_offset if cq else 0)
        elif cq is not None:
            # Re-read what the checkpoint leaves pending: the ranges of an older checkpoint, or
            # everything below its read offset; a slot before its read time was delivered.
            nxt = min(cp.next_offset, cq_max)
            ranges = cp.pending if cp.log_end is None else ((cq.min_offset, nxt),)
            for start, end in ranges:
                for off in range(max(start, cq.min_offset), min(end, nxt)):
                    self._read_entry(store, cq, off, cp.read_time_ms)
            self.wheel.next_offset = max(nxt, cq.min_offset)
        self.persist()
        if self.pending:
            log.info("timer: %d pending messages, reading on from offset %d", self.pending,
                     self.wheel.next_offset)  # fmt: skip

    def on_dispatch(self, run: list[DispatchRequest]) -> None:
        """Store listener: a new timer message may fall due before the current sleep ends.

        Only a running service (a master's) listens: a slave leaves delivery to its master.
        """
        if self.running and any(req.topic == TIMER_TOPIC for req in run):
            self.wakeup()

    # -- the loop -------------------------------------------------------------------------------

    async def _run_once(self) -> None:
        store = self.broker.store
        more = self._read_queue(store)
        now = _now_ms()
        delivered = 0
        if now >= self._retry_at:
            self._take_due(now)
            delivered, full = await self._deliver_due(store, now)
            more = more or full
        mono = time.monotonic()
        if delivered or (self._dirty and mono - self._persisted_at >= PERSIST_IDLE_S):
            self.persist()
        if mono - self._cleaned_at >= CLEANUP_S:
            self._cleaned_at = mono
            self.index.delete_passed(self._read_time_ms())
        self._sample(mono)
        due = self.next_due()
        wake = now + int(self.interval_s * 1000) if due is None else max(due, self._retry_at)
        self._sleep_s = 0.0 if more else max(0.0, (wake - _now_ms()) / 1000)

    async def _wait(self, interval_s: float) -> None:
        await super()._wait(min(interval_s, self._sleep_s))

    async def _on_stop(self) -> None:
        if self._opened:
            self.persist(clean=True)
            self.index.close()
            self._opened = False

    def _read_queue(self, store: FileMessageStore) -> bool:
        """File new timer-queue entries in the index; True when more remain."""
        cq = store.find_consume_queue(TIMER_TOPIC, 0)
        if cq is None:
            return False
        off = max(self.wheel.next_offset, cq.min_offset)
        end = min(cq.max_offset, off + MAX_PER_PASS)
        blocked = False
        while off < end:
            try:
                taken = self._read_entry(store, cq, off, None)
            except DiskFullError as exc:  # nothing of this entry is reachable: filed again later
                if not self._no_room_logged:
                    self._no_room_logged = True
                    log.error("timer: reading paused at queue offset %d: %s", off, exc)
                blocked = True
                break
            self._no_room_logged = False
            if taken is None:
                blocked = True  # its wheel slot is still held by another lap: later
                if not self._blocked_logged:
                    self._blocked_logged = True
                    log.warning("timer: reading paused at queue offset %d: its slot is past the "
                                "wheel (timerMaxDelaySec lowered, or a long stop); it goes on as "
                                "earlier slots pass", off)  # fmt: skip
                break
            self._blocked_logged = False
            self.enqueued += taken
            off += 1
        if off != self.wheel.next_offset:
            self.wheel.next_offset = off
            self._dirty = True
        return not blocked and off < cq.max_offset

    def _read_entry(
        self, store: FileMessageStore, cq: ConsumeQueue, off: int, since_ms: int | None
    ) -> int | None:
        """File timer-queue entry `off` unless its slot starts before `since_ms`: 1 when filed,
        0 when skipped, None when the index cannot take it yet."""
        entry = cq.entry(off)
        if entry is None:
            return 0
        phys, size, _ = entry
        rec = store.commit_log.read(phys, size)
        scan = scan_record(rec, 0, check_crc=False) if rec is not None else None
        if scan is None or scan.kind is not ScanKind.RECORD or scan.request is None:
            log.error("timer message at %d (queue offset %d) is unreadable; skipping it", phys, off)
            return 0
        out_ms = timer_out_ms(scan.request.properties)
        if out_ms is None:
            log.error("timer message at %d has no TIMER_OUT_MS; skipping it", phys)
            return 0
        if since_ms is not None and out_ms < since_ms:
            return 0  # delivered before the checkpoint was written
        if not self.index.link(out_ms, (off, phys, size)):
            return None
        return 1

    def _take_due(self, now: int) -> None:
        """Move passed slots from the index to the in-memory wheel, while it is short of work."""
        room = MAX_PER_PASS - self.wheel.count
        if room <= 0:
            return
        slots, _ = self.index.take_due(now, room)
        for slot_ms, entries in slots:
            for e in entries:
                self.wheel.add(slot_ms, e)

    async def _deliver_due(self, store: FileMessageStore, now: int) -> tuple[int, bool]:
        """Deliver passed slots, up to MAX_PER_PASS messages; (delivered, more remain).

        A slot's messages go to the store together (`put_each`: one append pass, one dispatch
        wake-up). Those it refuses for now go back to the front of their slot, and the pass
        ends there; a message of the same call that the store did take stays delivered, so
        after such a refusal (a disk that filled up mid-call) a slot may go out of order.
        """
        n = 0
        wheel = self.wheel
        while n < MAX_PER_PASS and (slot := wheel.pop_due(now)) is not None:
            out_ms, entries = slot
            room = MAX_PER_PASS - n
            if len(entries) > room:
                wheel.put_back(out_ms, entries[room:])
                entries = entries[:room]
            again = await self._deliver(store, entries)
            n += len(entries) - len(again)
            if again:
                wheel.put_back(out_ms, again)
                self._retry_at = now + RETRY_MS
                return n, False
        if n >= MAX_PER_PASS:
            return n, True
        due = self.index.next_due()
        return n, due is not None and due <= now

    async def _deliver(self, store: FileMessageStore, entries: list[Entry]) -> list[Entry]:
        """Move these entries' messages to their real topics; the entries to try again later
        (in their order). Delivered and skipped ones are done."""
        now = str(_now_ms())

        def stamp(m: StoredMessage, props: dict[str, str]) -> None:
            props[TIMER_ENQUEUE_MS] = str(m.store_timestamp)
            props[TIMER_DEQUEUE_MS] = now

        wheel = self.wheel
        msgs: list[MessageToStore] = []
        sent: list[Entry] = []
        for entry in entries:
            msg = real_message(
                store, entry[1], entry[2], _WHAT, stamp, expect=(TIMER_TOPIC, entry[0])
            )
            if msg is None:
                wheel.done(entry)  # skipped, logged
            else:
                msgs.append(msg)
                sent.append(entry)
        if not msgs:
            return []
        results = await store.put_each(msgs)
        again: list[Entry] = []
        delivered = 0
        for entry, r in zip(sent, results, strict=True):
            moved = put_outcome(r, _WHAT, entry[1], quiet=bool(again))
            if moved is Moved.RETRY:
                again.append(entry)
                continue
            wheel.done(entry)
            if moved is Moved.DONE:
                delivered += 1
        self.delivered += delivered
        self.broker.stats.put(delivered)
        return again

    # -- progress and figures -------------------------------------------------------------------

    def _read_time_ms(self) -> int:
        """Every slot before this has been delivered (or was empty)."""
        first = self.wheel.next_due()
        index_first = self.index.first_pending_ms
        return index_first if first is None else min(first - self.precision_ms, index_first)

    def persist(self, *, clean: bool = False) -> None:
        """Flush the index, then write the checkpoint that names it (atomically)."""
        cp = self.index.checkpoint(self.wheel.next_offset, self._read_time_ms(), clean=clean)
        save_json(self.path, cp.encode())
        self._dirty = False
        self._persisted_at = time.monotonic()

    def next_due(self) -> int | None:
        """When the earliest pending slot known falls due (its end)."""
        a, b = self.wheel.next_due(), self.index.next_due()
        return b if a is None else a if b is None else min(a, b)

    def _sample(self, mono: float) -> None:
        s = self._samples
        if not s or mono - s[-1][0] >= 1.0:
            s.append((mono, self.enqueued, self.delivered))
            while mono - s[0][0] > TPS_WINDOW_S:
                s.popleft()

    def _tps(self, i: int) -> float:
        s = self._samples
        if len(s) < 2 or s[-1][0] <= s[0][0]:
            return 0.0
        return (s[-1][i] - s[0][i]) / (s[-1][0] - s[0][0])

    @property
    def pending(self) -> int:
        """Timer messages not delivered yet."""
        return self.index.pending + self.wheel.count

    def runtime_info(self) -> dict[str, str]:
        """RocketMQ's timer figures of GET_BROKER_RUNTIME_INFO, under its key names."""
        cq = self.broker.store.find_consume_queue(TIMER_TOPIC, 0)
        first = self.next_due()
        behind_ms = max(0, _now_ms() - first) if first is not None else 0
        return {
            "timerReadBehind": str(behind_ms // 1000),
            "timerOffsetBehind": str(max(0, (cq.max_offset if cq else 0) - self.wheel.next_offset)),
            "timerCongestNum": str(self.pending),
            "timerEnqueueTps": f"{self._tps(1):.1f}",
            "timerDequeueTps": f"{self._tps(2):.1f}",
        }
