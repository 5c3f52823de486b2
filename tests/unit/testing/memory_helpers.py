"""Shared helpers of the in-memory broker tests: a recording consumer handler and a way to start
a consumer in one line."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rmqkit.client.message import Message
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult
from rmqkit.protocol.record import StoredMessage
from rmqkit.testing.memory import MemoryBroker, MemoryConsumer, MemoryProducer

Fail = Callable[[StoredMessage], int | None]
"""Says whether a delivered message fails, and at which delay level (None: it succeeds)."""


class Sink:
    """A consumer handler that records each delivered message and fails the ones `fail` picks
    (through `ctx.failed`, as the starter does)."""

    def __init__(self, fail: Fail | None = None) -> None:
        self.fail = fail
        self.seen: list[StoredMessage] = []
        self.batches: list[list[StoredMessage]] = []
        self.attempts: list[tuple[bytes, int]] = []
        """(body, reconsume times) at each delivery (ORDERLY hands the same objects again)."""
        self.active = 0
        self.max_active = 0

    async def __call__(self, batch: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            self.batches.append(list(batch))
            self.seen.extend(batch)
            self.attempts += [(m.body, m.reconsume_times) for m in batch]
            for _ in range(3):  # a handler awaits something: let other calls interleave
                await asyncio.sleep(0)
            if self.fail is not None:
                failed = {i: lv for i, m in enumerate(batch) if (lv := self.fail(m)) is not None}
                ctx.failed = failed or None
            return ConsumeResult.SUCCESS
        finally:
            self.active -= 1

    @property
    def bodies(self) -> list[bytes]:
        return [m.body for m in self.seen]


async def start_consumer(
    broker: MemoryBroker,
    group: str,
    topic: str,
    handler: Any,
    expression: str = "*",
    expression_type: str = "TAG",
    **options: Any,
) -> MemoryConsumer:
    c = MemoryConsumer(broker, group, **options)
    c.subscribe(topic, expression, expression_type)
    c.register(handler)
    await c.start()
    return c


async def send_all(
    producer: MemoryProducer, topic: str, bodies: list[bytes], **kw: Any
) -> list[str]:
    """Send one message per body; returns their message ids."""
    return [(await producer.send(Message(topic, b, **kw))).msg_id for b in bodies]
