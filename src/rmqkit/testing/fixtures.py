"""pytest fixtures for tests against a real broker: an embedded NameServer + broker on 127.0.0.1
(port 0, data in the test's tmp_path) and a `RocketApp` factory bound to it. Registered by the
`rmqkit` pytest plugin (`rmqkit.testing.plugin`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from rmqkit.starter.app import RocketApp
from rmqkit.starter.embedded import EmbeddedCluster
from rmqkit.starter.settings import RocketSettings

AppFactory = Callable[..., AbstractAsyncContextManager[RocketApp]]


@pytest.fixture
async def rocket_cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    """A started embedded cluster for one test; `.name_server` is its address."""
    async with EmbeddedCluster(tmp_path / "rocketmq", enable_property_filter=True) as cluster:
        yield cluster


@pytest.fixture
def rocket_app(rocket_cluster: EmbeddedCluster) -> AppFactory:
    """A factory of started `RocketApp`s on the test's embedded cluster:

    ```python
    async with rocket_app(listeners=registry) as app:
        await app.template.send("order:paid", order)
    ```
    Settings come from the arguments only, never from the developer's environment.
    """

    @asynccontextmanager
    async def make(settings: RocketSettings | None = None, **kw: Any) -> AsyncIterator[RocketApp]:
        base = settings or RocketSettings(_env_file=None)
        s = base.model_copy(update={"name_server": rocket_cluster.name_server})
        async with RocketApp(s, **kw) as app:
            yield app

    return make
