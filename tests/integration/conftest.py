"""A NameServer and a broker on 127.0.0.1, port 0, data in tmp_path; a remoting client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rmqkit.client.push_consumer import Handler, PushConsumer
from rmqkit.protocol.codes import RequestCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.client import RemotingClient
from rmqkit.server.broker.broker import Broker
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.server.settings import BrokerSettings
from rmqkit.server.store.settings import StoreSettings


def broker_settings(root: Path, namesrv: str | None, **kw: Any) -> BrokerSettings:
    store = StoreSettings(
        store_path_root_dir=root,
        mapped_file_size_commit_log_bytes=4 * 1024 * 1024,
        mapped_file_size_consume_queue_bytes=20 * 1000,
        max_message_size_bytes=256 * 1024,
        max_hash_slot_num=1000,
        max_index_num=4000,
        **kw.pop("store", {}),
    )
    return BrokerSettings(
        listen_host="127.0.0.1", listen_port=0, namesrv_addr=namesrv, store=store, **kw
    )


@dataclass
class Cluster:
    namesrv: NameServer
    broker: Broker
    client: RemotingClient
    root: Path

    @property
    def ns(self) -> str:
        return f"127.0.0.1:{self.namesrv.port}"

    @property
    def br(self) -> str:
        return self.broker.addr

    async def call(
        self, code: int, body: bytes = b"", addr: str | None = None, **ext: Any
    ) -> RemotingCommand:
        cmd = RemotingCommand(code, ext_fields={k: str(v) for k, v in ext.items()}, body=body)
        return await self.client.invoke(addr or self.br, cmd, 5.0)

    async def create_topic(self, topic: str, queues: int = 4) -> None:
        r = await self.call(
            RequestCode.UPDATE_AND_CREATE_TOPIC, topic=topic, defaultTopic="TBW102",
            readQueueNums=queues, writeQueueNums=queues, perm=6, topicFilterType="SINGLE_TAG",
        )  # fmt: skip
        assert r.code == 0, r.remark


@contextlib.asynccontextmanager
async def running_cluster(root: Path, **settings: Any) -> AsyncIterator[Cluster]:
    """A NameServer, a broker (`broker_settings(root / "store", ..., **settings)`) and a client."""
    async with NameServer(NameServerSettings(host="127.0.0.1", listen_port=0)) as ns:
        broker = Broker(broker_settings(root / "store", f"127.0.0.1:{ns.port}", **settings))
        await broker.start()
        client = RemotingClient()
        try:
            yield Cluster(ns, broker, client, root)
        finally:
            await client.close()
            await broker.stop()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path) as c:
        yield c


FAST_RETRIES = {"message_delay_level": " ".join(["100ms"] * 18)}
"""Store settings with every delay level at 100 ms: a consumer's retries come back at once."""


def consumer(c: Cluster, group: str, topic: str, handler: Handler, **kw: Any) -> PushConsumer:
    """A clustering push consumer of `topic` from its first offset, quick to rebalance and
    persist, retrying a message once."""
    pc = PushConsumer(group, c.ns, instance_name=f"c-{group}", rebalance_interval_ms=300,
                      persist_interval_ms=100, max_reconsume_times=1,
                      consume_from_where="CONSUME_FROM_FIRST_OFFSET", **kw)  # fmt: skip
    pc.subscribe(topic)
    pc.register(handler)
    return pc
