"""Delivering timer messages when due (RocketMQ 5's `TimerMessageStore` enqueue and dequeue).

The send path stores a timed message in `rmq_sys_wheel_timer` (`store/timer.py`). This service
reads that queue in order into a `TimerWheel` (slot -> ConsumeQueue offset, CommitLog offset,
size; never bodies) and, once a slot has passed, moves each of its messages to its real topic
with `move_to_real_topic` (shared with the delay levels), adding TIMER_ENQUEUE_MS and
TIMER_DEQUEUE_MS. Progress is kept in `config/timerCheckpoint.json`, written atomically after
every delivery: a restart, even after SIGKILL, rebuilds the wheel from the timer queue, loses
nothing, and repeats at most what was delivered after the last checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from rmqkit.protocol.record import StoredMessage
from rmqkit.server.broker.json_file import load_json, save_json
from rmqkit.server.broker.schedule import Moved, move_to_real_topic
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

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker
    from rmqkit.server.store import FileMessageStore
    from rmqkit.server.store.consume_queue import ConsumeQueue

log = logging.getLogger("rmqkit.broker.timer")

MAX_PER_PASS = 2048
"""Messages read, or delivered, per pass before the event loop gets a turn."""
RETRY_MS = 1000
"""After the store refused a delivery: try again this much later."""
PERSIST_IDLE_S = 1.0
"""Reading progress alone is written at most this often (deliveries are written at once)."""
TPS_WINDOW_S = 10.0


def _now_ms() -> int:
    return int(time.time() * 1000)


class TimerService(Service):
    """Reads the timer queue into the wheel and delivers each slot once it has passed."""

    name = "timer"

    def __init__(self, broker: Broker, path: Path, precision_ms: int) -> None:
        super().__init__(interval_s=1.0)
        self.broker = broker
        self.path = path
        self.wheel = TimerWheel(precision_ms)
        self.enqueued = 0
        """Timer messages read into the wheel since start (a restart counts pending ones again)."""
        self.delivered = 0
        self._sleep_s = 0.0
        self._retry_at = 0
        self._dirty = False
        self._persisted_at = 0.0
        self._samples: deque[tuple[float, int, int]] = deque()

    # -- start: rebuild the wheel -----------------------------------------------------------------

    def load(self) -> None:
        """Rebuild the pending messages from the checkpoint and the timer queue (store started)."""
        cp = TimerCheckpoint.decode(load_json(self.path))
        store = self.broker.store
        cq = store.find_consume_queue(TIMER_TOPIC, 0)
        if cq is None:
            self.wheel.next_offset = 0
            return
        # A ConsumeQueue cut back by recovery is re-read from where it now ends.
        nxt = min(cp.next_offset, cq.max_offset)
        for start, end in cp.pending:
            for off in range(max(start, cq.min_offset), min(end, nxt)):
                self._read_entry(store, cq, off, cp.read_time_ms)
        self.wheel.next_offset = max(nxt, cq.min_offset)
        if self.wheel.count:
            log.info("timer: %d pending messages restored, reading on from offset %d",
                     self.wheel.count, self.wheel.next_offset)  # fmt: skip

    def on_dispatch(self, req: DispatchRequest) -> None:
        """Store listener: a new timer message may fall due before the current sleep ends."""
        if req.topic == TIMER_TOPIC:
            self.wakeup()

    # -- the loop ---------------------------------------------------------------------------------

    async def _run_once(self) -> None:
        store = self.broker.store
        more = self._read_queue(store)
        now = _now_ms()
        delivered = 0
        if now >= self._retry_at:
            delivered, full = await self._deliver_due(store, now)
            more = more or full
        mono = time.monotonic()
        if delivered or (self._dirty and mono - self._persisted_at >= PERSIST_IDLE_S):
            self.persist()
        self._sample(mono)
        due = self.wheel.next_due()
        wake = now + int(self.interval_s * 1000) if due is None else max(due, self._retry_at)
        self._sleep_s = 0.0 if more else max(0.0, (wake - _now_ms()) / 1000)

    async def _wait(self, interval_s: float) -> None:
        await super()._wait(min(interval_s, self._sleep_s))

    async def _on_stop(self) -> None:
        self.persist()

    def _read_queue(self, store: FileMessageStore) -> bool:
        """Read new timer-queue entries into the wheel; True when more remain."""
        cq = store.find_consume_queue(TIMER_TOPIC, 0)
        if cq is None:
            return False
        off = max(self.wheel.next_offset, cq.min_offset)
        end = min(cq.max_offset, off + MAX_PER_PASS)
        while off < end:
            if self._read_entry(store, cq, off, None):
                self.enqueued += 1
            off += 1
        if off != self.wheel.next_offset:
            self.wheel.next_offset = off
            self._dirty = True
        return off < cq.max_offset

    def _read_entry(
        self, store: FileMessageStore, cq: ConsumeQueue, off: int, since_ms: int | None
    ) -> bool:
        """Put timer-queue entry `off` in the wheel unless its slot starts before `since_ms`."""
        entry = cq.entry(off)
        if entry is None:
            return False
        phys, size, _ = entry
        rec = store.commit_log.read(phys, size)
        scan = scan_record(rec, 0, check_crc=False) if rec is not None else None
        if scan is None or scan.kind is not ScanKind.RECORD or scan.request is None:
            log.error("timer message at %d (queue offset %d) is unreadable; skipping it", phys, off)
            return False
        out_ms = timer_out_ms(scan.request.properties)
        if out_ms is None:
            log.error("timer message at %d has no TIMER_OUT_MS; skipping it", phys)
            return False
        if since_ms is not None and out_ms < since_ms:
            return False  # delivered before the checkpoint was written
        self.wheel.add(out_ms, (off, phys, size))
        return True

    async def _deliver_due(self, store: FileMessageStore, now: int) -> tuple[int, bool]:
        """Deliver passed slots, up to MAX_PER_PASS messages; (delivered, more remain)."""
        n = 0
        wheel = self.wheel
        while (slot := wheel.pop_due(now)) is not None:
            out_ms, entries = slot
            for i, entry in enumerate(entries):
                if n >= MAX_PER_PASS:
                    wheel.put_back(out_ms, entries[i:])
                    return n, True
                moved = await self._deliver(store, entry)
                if moved is Moved.RETRY:
                    wheel.put_back(out_ms, entries[i:])
                    self._retry_at = now + RETRY_MS
                    return n, False
                wheel.done(entry)
                n += 1
        return n, False

    async def _deliver(self, store: FileMessageStore, entry: Entry) -> Moved:
        def stamp(m: StoredMessage, props: dict[str, str]) -> None:
            props[TIMER_ENQUEUE_MS] = str(m.store_timestamp)
            props[TIMER_DEQUEUE_MS] = str(_now_ms())

        moved = await move_to_real_topic(store, entry[1], entry[2], "timer message", stamp)
        if moved is Moved.DONE:
            self.delivered += 1
            self.broker.stats.put(1)
        return moved

    # -- progress and figures ---------------------------------------------------------------------

    def persist(self) -> None:
        save_json(self.path, self.wheel.checkpoint())
        self._dirty = False
        self._persisted_at = time.monotonic()

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
        """Timer messages waiting in the wheel."""
        return self.wheel.count

    def runtime_info(self) -> dict[str, str]:
        """RocketMQ's timer figures of GET_BROKER_RUNTIME_INFO, under its key names."""
        cq = self.broker.store.find_consume_queue(TIMER_TOPIC, 0)
        first = self.wheel.next_due()
        behind_ms = max(0, _now_ms() - first) if first is not None else 0
        return {
            "timerReadBehind": str(behind_ms // 1000),
            "timerOffsetBehind": str(max(0, (cq.max_offset if cq else 0) - self.wheel.next_offset)),
            "timerCongestNum": str(self.wheel.count),
            "timerEnqueueTps": f"{self._tps(1):.1f}",
            "timerDequeueTps": f"{self._tps(2):.1f}",
        }
