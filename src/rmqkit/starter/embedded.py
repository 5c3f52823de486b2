"""`EmbeddedCluster`: a NameServer and one broker inside the service's own process, on 127.0.0.1,
so a service runs with no RocketMQ set up at all (the app starts one when no name server is
configured; the pytest plugin starts one per test)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from rmqkit.common.lifecycle import AsyncLifecycle
from rmqkit.common.names import DEFAULT_TOPIC
from rmqkit.remoting.tls_config import TlsSettings
from rmqkit.server.broker.broker import Broker
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.server.settings import BrokerSettings
from rmqkit.server.store.settings import StoreSettings

REGISTRATION_POLLS = 1_000  # of 10 ms each


class EmbeddedCluster(AsyncLifecycle):
    """A NameServer and a broker in this process.

    Args:
        data_dir: the broker's store; None: a temporary directory removed at stop.
        namesrv_port / broker_port: 0 picks free ports.
        flush_disk_type: ASYNC_FLUSH (fast) or SYNC_FLUSH (a send returns once on disk).
        broker_name / cluster_name: as in broker.properties.
        tls: what the NameServer and the broker accept (`tls.server`) and how the broker
            registers (`tls.client`); default RocketMQ's: plain and TLS, self-signed.
        **broker_options: any other `BrokerSettings` field (e.g. enable_property_filter).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        namesrv_port: int = 0,
        broker_port: int = 0,
        flush_disk_type: Literal["ASYNC_FLUSH", "SYNC_FLUSH"] = "ASYNC_FLUSH",
        broker_name: str = "broker-a",
        cluster_name: str = "DefaultCluster",
        store_options: dict[str, Any] | None = None,
        tls: TlsSettings | None = None,
        **broker_options: Any,
    ) -> None:
        self.tls = tls if tls is not None else TlsSettings()
        self._given_dir = data_dir
        self._tmp: Path | None = None
        self.namesrv_port = namesrv_port
        self.broker_port = broker_port
        self.flush_disk_type = flush_disk_type
        self.broker_name = broker_name
        self.cluster_name = cluster_name
        self.store_options = store_options or {}
        self.broker_options = broker_options
        self.namesrv: NameServer | None = None
        self.broker: Broker | None = None

    @property
    def name_server(self) -> str:
        """The NameServer address for clients (`127.0.0.1:port`)."""
        if self.namesrv is None:
            raise RuntimeError("the embedded cluster is not started")
        return f"127.0.0.1:{self.namesrv.port}"

    @property
    def data_dir(self) -> Path:
        d = self._given_dir or self._tmp
        if d is None:
            raise RuntimeError("the embedded cluster is not started")
        return d

    async def start(self) -> None:
        if self._given_dir is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="rmqkit-embedded-"))
        self.namesrv = NameServer(
            NameServerSettings(host="127.0.0.1", listen_port=self.namesrv_port),
            tls=self.tls.server,
        )
        await self.namesrv.start()
        store = StoreSettings(
            store_path_root_dir=self.data_dir / "store",
            flush_disk_type=self.flush_disk_type,
            **self.store_options,
        )
        settings = BrokerSettings(
            listen_host="127.0.0.1",
            listen_port=self.broker_port,
            namesrv_addr=self.name_server,
            broker_name=self.broker_name,
            broker_cluster_name=self.cluster_name,
            store=store,
            **self.broker_options,
        )
        self.broker = Broker(settings, tls=self.tls)
        try:
            await self.broker.start()
            await self._registered()
        except BaseException:
            await self.broker.stop()
            await self.namesrv.stop()
            raise

    async def _registered(self) -> None:
        """Wait until the broker's first registration reached the NameServer, so a client started
        right after `start()` finds routes (the broker registers from a background loop)."""
        assert self.namesrv is not None
        for _ in range(REGISTRATION_POLLS):
            if self.namesrv.routes.route(DEFAULT_TOPIC) is not None:
                return
            await asyncio.sleep(0.01)
        raise RuntimeError("the embedded broker did not register with its NameServer within 10 s")

    async def stop(self) -> None:
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None
        if self.namesrv is not None:
            await self.namesrv.stop()
            self.namesrv = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
