"""`MemoryTransport`: the starter's `Transport` on a `MemoryBroker`, so a `RocketApp` runs its
listeners, template and transactional flows against an in-memory RocketMQ in unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from rmqkit.client.transaction import Checker
from rmqkit.starter.consistency import GroupView
from rmqkit.starter.transport import Endpoint
from rmqkit.testing.memory.broker import MemoryBroker
from rmqkit.testing.memory.consumer import MemoryConsumer
from rmqkit.testing.memory.producer import MemoryProducer, MemoryTransactionProducer


class MemoryTransport:
    """Makes producers and consumers of one in-memory broker.

    Several transports (several `RocketApp`s, as several instances of a service) may share one
    broker: consumers of one CLUSTERING group then share its queues.

    Args:
        broker: the broker (default: a new one with its own fake clock).
    """

    def __init__(self, broker: MemoryBroker | None = None) -> None:
        self.broker = broker or MemoryBroker()

    def producer(self, group: str, **options: Any) -> MemoryProducer:
        """A producer of `group` (the real producer's options are accepted)."""
        return MemoryProducer(self.broker, group, **options)

    def transaction_producer(
        self, group: str, checker: Checker, **options: Any
    ) -> MemoryTransactionProducer:
        """A transaction producer of `group`; `checker` answers the broker's check-backs."""
        return MemoryTransactionProducer(self.broker, group, checker=checker, **options)

    def consumer(
        self, group: str, *, endpoint: Endpoint | None = None, **options: Any
    ) -> MemoryConsumer:
        """A push consumer of `group` (`PushConsumer`'s options). The one broker serves every
        endpoint: a listener's own name server, keys or TLS change nothing in memory."""
        if endpoint is not None:
            options.setdefault("instance_name", endpoint.instance_name)
        return MemoryConsumer(self.broker, group, **options)

    async def group_view(self, group: str, endpoint: Endpoint | None = None) -> GroupView | None:
        """None: every member of an in-memory group lives in this process (the app checks
        those against each other already)."""
        return None

    async def consumer_lag(
        self, group: str, topics: Iterable[str], endpoint: Endpoint | None = None
    ) -> dict[str, int]:
        """Messages of each topic the group has not consumed yet."""
        return {t: self.broker.lag(group, t) for t in topics}

    async def close(self) -> None:
        """Nothing to release: the broker outlives its transports (the clients stop first)."""
        await asyncio.sleep(0)
