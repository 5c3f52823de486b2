"""A NameServer on 127.0.0.1 (free port) and a remoting client, for the wire-level tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rmqkit.remoting.client import RemotingClient
from rmqkit.server.namesrv import NameServer, NameServerSettings


@pytest.fixture
async def namesrv() -> AsyncIterator[NameServer]:
    async with NameServer(NameServerSettings(host="127.0.0.1", listen_port=0)) as ns:
        yield ns


@pytest.fixture
async def client() -> AsyncIterator[RemotingClient]:
    async with RemotingClient() as c:
        yield c
