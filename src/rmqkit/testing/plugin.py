"""The `rmqkit` pytest plugin: fixtures for testing services built on rmqkit.

Enable it with `pytest_plugins = ["rmqkit.testing.plugin"]` in a conftest.py (the package also
registers it under the `pytest11` entry point).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rmqkit.testing.fixtures import rocket_app, rocket_cluster
from rmqkit.testing.memory import (
    FakeClock,
    MemoryBroker,
    MemoryTransport,
    RocketTestAppFactory,
)

# =================================================================================================
# In-memory RocketMQ (rmqkit.testing.memory): no sockets, a fake clock, deterministic delivery.
# =================================================================================================


@pytest.fixture
async def memory_broker() -> AsyncIterator[MemoryBroker]:
    """A fresh `MemoryBroker` on its own `FakeClock` (`memory_broker.clock`); the producers and
    consumers still running on it are stopped after the test."""
    broker = MemoryBroker(FakeClock())
    try:
        yield broker
    finally:
        await broker.close()


@pytest.fixture
def memory_transport(memory_broker: MemoryBroker) -> MemoryTransport:
    """A `MemoryTransport` on the test's `memory_broker`, for `RocketApp(transport=...)`."""
    return MemoryTransport(memory_broker)


@pytest.fixture
async def rocket_test_app(memory_broker: MemoryBroker) -> AsyncIterator[RocketTestAppFactory]:
    """Makes `RocketTestApp`s (a `RocketApp` on the test's `memory_broker`, an in-memory
    idempotency store on its fake clock) and stops any left running after the test:

    ```python
    async with rocket_test_app(listeners=[spec], flows=[flow]) as t:
        await t.template.send("orders:paid", order)
        await t.drain()                      # or: await t.advance(30)
        assert t.published("payments")
    ```
    Two apps made in one test share the broker, as two instances of a service on one cluster.
    """
    factory = RocketTestAppFactory(memory_broker)
    try:
        yield factory
    finally:
        await factory.close()


# =================================================================================================
# A real broker (rmqkit.testing.fixtures): `rocket_cluster` (embedded NameServer + broker on
# 127.0.0.1, port 0) and `rocket_app` (a RocketApp factory bound to it).
# =================================================================================================

__all__ = ["memory_broker", "memory_transport", "rocket_app", "rocket_cluster", "rocket_test_app"]
