"""`RocketTestApp`: a service's `RocketApp` on an in-memory broker, with the fake clock, an
in-memory idempotency store on that clock, and the helpers a test asserts with (faststream's
`TestRabbitBroker`, for RocketMQ semantics)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rmqkit.protocol.record import StoredMessage
from rmqkit.starter.app import RocketApp
from rmqkit.starter.idempotency import IdempotencyStore, MemoryIdempotencyStore
from rmqkit.starter.listener import ListenerRegistry, ListenerSpec
from rmqkit.starter.settings import RocketSettings
from rmqkit.starter.template import RocketTemplate
from rmqkit.starter.transactional import FlowRegistry, FlowSpec
from rmqkit.testing.memory.broker import MemoryBroker
from rmqkit.testing.memory.clock import FakeClock
from rmqkit.testing.memory.transport import MemoryTransport


class RocketTestApp:
    """A `RocketApp` wired to a `MemoryBroker`; an async context manager that starts it.

    Args:
        broker: the broker (default: a new one); apps sharing a broker are instances of
            services on one cluster.
        settings: the app's settings (default: `RocketSettings()` without a `.env` file).
        listeners / flows / instances / container / metrics: as for `RocketApp`.
        idempotency_store: default: a `MemoryIdempotencyStore` on the broker's fake clock.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        broker: MemoryBroker | None = None,
        *,
        settings: RocketSettings | None = None,
        listeners: ListenerRegistry | Iterable[ListenerSpec] | None = None,
        flows: FlowRegistry | Iterable[FlowSpec] | None = None,
        instances: Iterable[object] = (),
        container: Any = None,
        idempotency_store: IdempotencyStore | None = None,
        metrics: Any = None,
    ) -> None:
        self.broker = broker or MemoryBroker()
        self.clock: FakeClock = self.broker.clock
        self.idempotency_store = idempotency_store or MemoryIdempotencyStore(clock=self.clock)
        if settings is None:  # no .env file: a test's settings come from its arguments
            settings = RocketSettings(_env_file=None)
        self.app = RocketApp(
            settings, container=container, listeners=listeners,
            flows=flows, instances=instances, transport=MemoryTransport(self.broker),
            idempotency_store=self.idempotency_store, metrics=metrics,
        )  # fmt: skip
        self.started = False

    @property
    def template(self) -> RocketTemplate:
        """The app's template (once started)."""
        return self.app.template

    async def start(self) -> None:
        await self.app.start()
        self.started = True

    async def stop(self) -> None:
        if self.started:
            self.started = False
            await self.app.stop()

    async def __aenter__(self) -> RocketTestApp:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def drain(self) -> None:
        """Wait until everything deliverable now has been handled (see `MemoryBroker.drain`)."""
        await self.broker.drain()

    async def advance(self, seconds: float) -> None:
        """Move the fake clock, delivering what falls due on the way."""
        await self.broker.advance(seconds)

    def published(self, topic: str, tag: str | None = None) -> list[StoredMessage]:
        """The messages stored in `topic` (of `tag`), in the order they were stored."""
        return self.broker.messages(topic, tag)

    def dlq(self, group: str) -> list[StoredMessage]:
        """The messages in the group's dead-letter queue."""
        return self.broker.dlq(group)


class RocketTestAppFactory:
    """Makes `RocketTestApp`s on one broker and stops the ones left running at `close()` (the
    `rocket_test_app` fixture is one)."""

    __test__ = False

    def __init__(self, broker: MemoryBroker | None = None) -> None:
        self.broker = broker or MemoryBroker()
        self.apps: list[RocketTestApp] = []

    def __call__(self, **options: Any) -> RocketTestApp:
        """A new app on the factory's broker (`RocketTestApp`'s keyword arguments); enter it
        with `async with` to start it."""
        app = RocketTestApp(self.broker, **options)
        self.apps.append(app)
        return app

    async def start(self, **options: Any) -> RocketTestApp:
        """A new app, started."""
        app = self(**options)
        await app.start()
        return app

    async def close(self) -> None:
        for app in reversed(self.apps):
            await app.stop()
        await self.broker.close()
