"""Arbitrary-time delays in the store (RocketMQ 5's timer): the topic, the routing, the wheel.

A message asking for delivery at an epoch time (TIMER_DELIVER_MS) or after a delay
(TIMER_DELAY_SEC, TIMER_DELAY_MS) is stored in `rmq_sys_wheel_timer` queue 0, its real topic and
queue in REAL_TOPIC / REAL_QID and the start of its time slot in TIMER_OUT_MS, as RocketMQ's
broker does before a put (`HookUtils.transformTimerMessage`). The broker's timer service files
the pending ones on disk by slot (`timer_index.py`), reads a slot into a small in-memory
`TimerWheel` once it has passed, and moves each of its messages back to its real topic, so a
message is never delivered before the time it asked for.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any

from rmqkit.common.properties import (
    NAME_VALUE_SEPARATOR,
    PROPERTY_SEPARATOR,
    Prop,
    find_property,
)
from rmqkit.protocol.codes import TRANSACTION_TYPE_MASK, SysFlag
from rmqkit.server.store.delay import DELAY_MARK
from rmqkit.server.store.message import MessageToStore

TIMER_TOPIC = "rmq_sys_wheel_timer"
"""RocketMQ's `TimerMessageStore.TIMER_TOPIC`: where timed messages wait (one queue)."""
TIMER_OUT_MS = "TIMER_OUT_MS"
"""Start of the message's slot (epoch ms); it is delivered once the slot has passed."""
TIMER_ENQUEUE_MS = "TIMER_ENQUEUE_MS"
"""Added on delivery: when the broker stored the message in the timer topic."""
TIMER_DEQUEUE_MS = "TIMER_DEQUEUE_MS"
"""Added on delivery: when the timer moved it to its real topic."""
TIMER_REQUEST_KEYS = (Prop.TIMER_DELAY_SEC, Prop.TIMER_DELAY_MS, Prop.TIMER_DELIVER_MS)
"""The three ways to ask, in the order RocketMQ reads them (the first present wins)."""
PRECISIONS_MS = (100, 200, 500, 1000)
"""The slot widths RocketMQ allows; `timerPrecisionMs` is snapped down to one of them."""
PROGRESS_CHUNK = 1024
"""ConsumeQueue offsets per progress chunk: a restart re-reads only chunks with pending entries."""

_JAVA_LONG = re.compile(r"[+-]?[0-9]{1,19}")
_OUT_MARK = TIMER_OUT_MS + NAME_VALUE_SEPARATOR
_UNITS = {Prop.TIMER_DELAY_SEC: "seconds", Prop.TIMER_DELAY_MS: "milliseconds",
          Prop.TIMER_DELIVER_MS: "epoch milliseconds"}  # fmt: skip


def snap_precision(ms: int) -> int:
    """The allowed slot width at or below `ms` (100 for anything smaller), as RocketMQ's setter."""
    return max([p for p in PRECISIONS_MS if p <= ms], default=PRECISIONS_MS[0])


def slot_of(deliver_ms: int, precision_ms: int) -> int:
    """TIMER_OUT_MS for a delivery time: the start of the slot that ends at or after it."""
    if deliver_ms % precision_ms == 0:
        return deliver_ms - precision_ms
    return deliver_ms // precision_ms * precision_ms


class TimerStatus(Enum):
    """Why a timer request is refused; the send processor maps these to response codes."""

    ILLEGAL = auto()
    """A value that is not a number, or a delay past `timerMaxDelaySec` (MESSAGE_ILLEGAL)."""
    NOT_ENABLED = auto()
    """`timerWheelEnable=false` (SYSTEM_ERROR, as RocketMQ answers)."""


@dataclass(frozen=True, slots=True)
class TimerRefusal:
    status: TimerStatus
    remark: str


@dataclass(frozen=True, slots=True)
class TimerPolicy:
    """The three settings the send path applies, read once from `StoreSettings`."""

    enabled: bool = True
    max_delay_ms: int = 3 * 24 * 3600 * 1000
    precision_ms: int = 1000


def requests_timer(props: str) -> bool:
    """Whether a properties string asks for a timer (the cheap test before `route_timer`)."""
    return "TIMER_" in props and any(find_property(props, k) is not None
                                     for k in TIMER_REQUEST_KEYS)  # fmt: skip


def route_timer(
    msg: MessageToStore, now_ms: int, policy: TimerPolicy
) -> MessageToStore | TimerRefusal:
    """The message as stored: moved to the timer topic when it asks for a future time.

    Unchanged when it asks for nothing, for a time already past (delivered at once, its TIMER_*
    properties kept), carries a DELAY level (the level wins; the store drops the TIMER_* keys),
    is a half or rollback record, or was timed before (TIMER_OUT_MS present).
    """
    props = msg.properties
    if "TIMER_" not in props or msg.topic == TIMER_TOPIC:
        return msg
    if msg.sys_flag & TRANSACTION_TYPE_MASK not in (0, SysFlag.TRANSACTION_COMMIT):
        return msg
    if DELAY_MARK in props:
        level = find_property(props, Prop.DELAY_TIME_LEVEL)
        if level and (not _JAVA_LONG.fullmatch(level) or int(level) > 0):
            return msg  # a level, or a bad DELAY the store refuses by name
    if _OUT_MARK in props and find_property(props, TIMER_OUT_MS) is not None:
        return msg
    for key in TIMER_REQUEST_KEYS:
        raw = find_property(props, key)
        if raw is not None:
            break
    else:
        return msg
    if not policy.enabled:
        return TimerRefusal(
            TimerStatus.NOT_ENABLED,
            "timer messages are turned off on this broker (timerWheelEnable=false); "
            "use a delay level (DELAY) instead",
        )
    if not _JAVA_LONG.fullmatch(raw):
        return TimerRefusal(
            TimerStatus.ILLEGAL,
            f"timer message illegal: {key}={raw!r} is not a whole number of {_UNITS[key]}",
        )
    value = int(raw)
    if key == Prop.TIMER_DELAY_SEC:
        deliver_ms = now_ms + value * 1000
    elif key == Prop.TIMER_DELAY_MS:
        deliver_ms = now_ms + value
    else:
        deliver_ms = value
    if deliver_ms <= now_ms:
        return msg  # the time has come: stored in its topic as it is
    if deliver_ms - now_ms > policy.max_delay_ms:
        return TimerRefusal(
            TimerStatus.ILLEGAL,
            f"timer message illegal: {key}={raw} asks for delivery {deliver_ms - now_ms} ms from "
            f"now, past the longest delay of {policy.max_delay_ms} ms (timerMaxDelaySec="
            f"{policy.max_delay_ms // 1000})",
        )
    if props and not props.endswith(PROPERTY_SEPARATOR):
        props += PROPERTY_SEPARATOR
    # Appended last: a reader's dict keeps the last of a repeated key, so these win.
    props += (
        f"{TIMER_OUT_MS}{NAME_VALUE_SEPARATOR}{slot_of(deliver_ms, policy.precision_ms)}"
        f"{PROPERTY_SEPARATOR}{Prop.REAL_TOPIC}{NAME_VALUE_SEPARATOR}{msg.topic}"
        f"{PROPERTY_SEPARATOR}{Prop.REAL_QUEUE_ID}{NAME_VALUE_SEPARATOR}{msg.queue_id}"
        f"{PROPERTY_SEPARATOR}"
    )
    return MessageToStore(
        TIMER_TOPIC, 0, msg.body, props, msg.flag, msg.sys_flag, msg.born_timestamp,
        msg.born_host, msg.reconsume_times, msg.prepared_transaction_offset, msg.body_crc,
        msg.wait_store_ok,
    )  # fmt: skip


def timer_out_ms(props: str) -> int | None:
    """TIMER_OUT_MS of a stored timer message, None when it is missing or not a number."""
    raw = find_property(props, TIMER_OUT_MS)
    return int(raw) if raw is not None and _JAVA_LONG.fullmatch(raw) else None


Entry = tuple[int, int, int]
"""(ConsumeQueue offset, CommitLog offset, size) of one pending timer message."""


class TimerWheel:
    """Timer messages by slot, in memory: the slots the timer service is delivering.

    A slot is keyed by its start (TIMER_OUT_MS) and falls due `precision_ms` later; a heap orders
    the keys. The service puts only slots that have passed here (the pending ones are on disk,
    `TimerIndex`). `next_offset` is how far the timer queue has been read. `checkpoint` writes
    format 1 of `TimerCheckpoint`, what rmqkit kept before the disk index (chunks of
    `PROGRESS_CHUNK` ConsumeQueue offsets still pending); the service reads it on upgrade.
    """

    def __init__(self, precision_ms: int) -> None:
        self.precision_ms = precision_ms
        self.slots: dict[int, list[Entry]] = {}
        self._heap: list[int] = []
        self._chunks: dict[int, int] = {}
        self.next_offset = 0
        self.count = 0

    def add(self, out_ms: int, entry: Entry) -> None:
        slot = self.slots.get(out_ms)
        if slot is None:
            self.slots[out_ms] = slot = []
            heapq.heappush(self._heap, out_ms)
        slot.append(entry)
        chunk = entry[0] // PROGRESS_CHUNK
        self._chunks[chunk] = self._chunks.get(chunk, 0) + 1
        self.count += 1

    def next_due(self) -> int | None:
        """When the earliest slot falls due (its end), None when nothing is pending."""
        return self._heap[0] + self.precision_ms if self._heap else None

    def pop_due(self, now_ms: int) -> tuple[int, list[Entry]] | None:
        """Take the earliest slot once it has passed; its entries stay counted until `done`."""
        if not self._heap or self._heap[0] + self.precision_ms > now_ms:
            return None
        out_ms = heapq.heappop(self._heap)
        return out_ms, self.slots.pop(out_ms)

    def put_back(self, out_ms: int, entries: list[Entry]) -> None:
        """Return entries of a popped slot that were not delivered (they go first again)."""
        if not entries:
            return
        slot = self.slots.get(out_ms)
        if slot is None:
            self.slots[out_ms] = list(entries)
            heapq.heappush(self._heap, out_ms)
        else:
            slot[:0] = entries

    def done(self, entry: Entry) -> None:
        """One popped entry was delivered (or dropped for good)."""
        chunk = entry[0] // PROGRESS_CHUNK
        left = self._chunks[chunk] - 1
        if left:
            self._chunks[chunk] = left
        else:
            del self._chunks[chunk]
        self.count -= 1

    def checkpoint(self) -> dict[str, object]:
        """What a restart starts from: read offset, earliest pending slot, chunks to re-read.

        Every entry read so far whose slot starts before `readTimeMs` has been delivered; the
        ones at or after it have not (bar a slot cut short by a store refusal).
        """
        runs: list[list[int]] = []
        for c in sorted(self._chunks):
            if runs and runs[-1][1] == c:
                runs[-1][1] = c + 1
            else:
                runs.append([c, c + 1])
        return {
            "nextOffset": self.next_offset,
            "readTimeMs": self._heap[0] if self._heap else None,
            "pendingChunks": runs,
            "chunkSize": PROGRESS_CHUNK,
        }


@dataclass(frozen=True, slots=True)
class TimerCheckpoint:
    """A decoded `config/timerCheckpoint.json`.

    Format 2 (the disk-backed timer, `store/timer_index.py`) names where the TimerLog ends, the
    wheel's geometry and whether the broker stopped cleanly. Format 1, written by rmqkit before
    the timer kept its pending messages on disk (`TimerWheel.checkpoint`), names ConsumeQueue
    ranges still pending instead; a broker upgraded from it rebuilds its index from them.
    """

    next_offset: int = 0
    read_time_ms: int | None = None
    pending: tuple[tuple[int, int], ...] = ()
    """Format 1: ConsumeQueue offset ranges [start, end) below `next_offset` to re-read."""
    log_end: int | None = None
    """Format 2: the TimerLog's end when this was written; None for format 1 (or no file)."""
    pending_count: int = 0
    precision_ms: int = 0
    slot_count: int = 0
    clean: bool = False
    """Written by a clean stop: the wheel file can be trusted as it is."""

    def encode(self) -> dict[str, object]:
        """Format 2 as JSON."""
        return {
            "version": 2, "nextOffset": self.next_offset, "readTimeMs": self.read_time_ms,
            "logEnd": self.log_end, "pending": self.pending_count,
            "precisionMs": self.precision_ms, "slotCount": self.slot_count, "clean": self.clean,
        }  # fmt: skip

    @classmethod
    def decode(cls, data: Mapping[str, Any] | None) -> TimerCheckpoint:
        """Lenient: a missing or malformed file means "re-read the timer queue from its start"."""
        d = data or {}
        try:
            nxt = int(d.get("nextOffset", 0))
            rt = d.get("readTimeMs")
            read_time = None if rt is None else int(rt)
            if d.get("logEnd") is not None:
                if read_time is None:
                    return cls()
                return cls(
                    nxt, read_time, (), int(d["logEnd"]), int(d.get("pending", 0)),
                    int(d.get("precisionMs", 0)), int(d.get("slotCount", 0)),
                    d.get("clean") is True,
                )  # fmt: skip
            size = int(d.get("chunkSize", PROGRESS_CHUNK))
            runs = d.get("pendingChunks") or ()
            pending = tuple((int(a) * size, min(int(b) * size, nxt)) for a, b in runs)
            return cls(nxt, read_time, pending)
        except (TypeError, ValueError, KeyError):
            return cls()
