"""ProcessQueue: the messages of one queue pulled but not yet consumed (RocketMQ `ProcessQueue`).

Kept by queue offset, so the offset that is safe to commit is always the smallest one still in
flight (or one past the largest seen when none is): a crash redelivers, it never skips.
"""

from __future__ import annotations

import time
from typing import Any

from rmqkit.protocol.record import StoredMessage

_MIB = 1024 * 1024


class ProcessQueue:
    """In-flight messages of one queue, and whether the queue is still assigned to us."""

    def __init__(self) -> None:
        # Pulls of one queue arrive in offset order and a dict keeps insertion order, so the
        # first key is always the smallest offset in flight.
        self.messages: dict[int, StoredMessage] = {}
        self.bytes = 0
        self.max_offset_seen = -1
        self.dropped = False
        self.last_pull_ms = 0
        """When a pull of this queue last started (epoch ms; for running info)."""
        self.last_consume_ms = 0
        """When messages of it were last consumed (epoch ms)."""
        self.last_lock_ms = 0
        """ORDERLY: when the broker last granted this consumer the queue's lock (epoch ms)."""

    def put(self, msgs: list[StoredMessage]) -> None:
        for m in msgs:
            if m.queue_offset not in self.messages:
                self.messages[m.queue_offset] = m
                self.bytes += len(m.body)
            if m.queue_offset > self.max_offset_seen:
                self.max_offset_seen = m.queue_offset

    def remove(self, msgs: list[StoredMessage]) -> int:
        """Forget consumed messages; returns the offset now safe to commit (-1: nothing yet)."""
        for m in msgs:
            if self.messages.pop(m.queue_offset, None) is not None:
                self.bytes -= len(m.body)
        self.last_consume_ms = int(time.time() * 1000)
        return self.commit_offset()

    def commit_offset(self) -> int:
        if self.messages:
            return next(iter(self.messages))
        return self.max_offset_seen + 1 if self.max_offset_seen >= 0 else -1

    @property
    def count(self) -> int:
        return len(self.messages)

    def info(self, commit_offset: int, *, locked: bool) -> dict[str, Any]:
        """RocketMQ's `ProcessQueueInfo` of this queue (GET_CONSUMER_RUNNING_INFO's mqTable)."""
        cached = self.messages
        return {
            "commitOffset": commit_offset,
            "cachedMsgMinOffset": next(iter(cached)) if cached else 0,
            "cachedMsgMaxOffset": next(reversed(cached)) if cached else 0,
            "cachedMsgCount": len(cached),
            "cachedMsgSizeInMiB": self.bytes // _MIB,
            "transactionMsgMinOffset": 0,
            "transactionMsgMaxOffset": 0,
            "transactionMsgCount": 0,
            "locked": locked,
            "tryUnlockTimes": 0,
            "lastLockTimestamp": self.last_lock_ms,
            "droped": self.dropped,
            "lastPullTimestamp": self.last_pull_ms,
            "lastConsumeTimestamp": self.last_consume_ms,
        }
