"""NameServer: the registry brokers register with and clients ask (RocketMQ's NamesrvController).

Wires a RemotingServer, the RouteTable, the KVConfig and an expiry scan. NameServers share
nothing: brokers register with each one, and clients may ask any of them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel, Field

from rmqkit.common.lifecycle import AsyncLifecycle
from rmqkit.remoting.connection import Connection
from rmqkit.remoting.server import RemotingServer
from rmqkit.remoting.tls import ServerTls
from rmqkit.server.namesrv.kv_config import KVConfig
from rmqkit.server.namesrv.processor import NameServerProcessor
from rmqkit.server.namesrv.route_table import RouteTable
from rmqkit.server.service import Service

log = logging.getLogger("rmqkit.namesrv")


class NameServerSettings(BaseModel):
    """Settings of one NameServer."""

    host: str = Field("0.0.0.0", description="Address to listen on.")
    listen_port: int = Field(9876, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    broker_expire_ms: int = Field(
        120_000,
        gt=0,
        description="A broker silent this long is removed, unless it registered its own "
        "heartbeatTimeoutMillis.",
    )
    scan_interval_ms: int = Field(5_000, gt=0, description="How often to look for silent brokers.")
    kv_config_path: Path | None = Field(
        None, description="JSON file for KV config (kvConfig.json); None keeps it in memory."
    )


class BrokerExpiryService(Service):
    """Removes brokers whose registrations stopped (RocketMQ's scanNotActiveBroker)."""

    name = "namesrv-broker-expiry"

    def __init__(self, routes: RouteTable, interval_s: float) -> None:
        super().__init__(interval_s)
        self.routes = routes

    async def _run_once(self) -> None:
        for info in self.routes.expire():
            # As Java does, also drop the connection the silent broker registered over.
            if info.connection is not None:
                info.connection.close()


class NameServer(AsyncLifecycle):
    """One NameServer; `async with NameServer(settings) as ns:`, then give out `ns.addr`."""

    def __init__(
        self, settings: NameServerSettings | None = None, *, tls: ServerTls | None = None
    ) -> None:
        self.settings = settings or NameServerSettings()
        self.tls = tls if tls is not None else ServerTls()
        """Which connections it accepts (RocketMQ's default: plain and TLS)."""
        self.routes = RouteTable(default_timeout_ms=self.settings.broker_expire_ms)
        self.kv = KVConfig(self.settings.kv_config_path)
        self.processor = NameServerProcessor(self.routes, self.kv)
        self._server: RemotingServer | None = None
        self._expiry = BrokerExpiryService(self.routes, self.settings.scan_interval_ms / 1000)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the NameServer is not started")
        return self._server.port

    @property
    def addr(self) -> str:
        """`host:port` to give brokers and clients (loopback when listening on all interfaces)."""
        host = self.settings.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}"

    async def start(self) -> None:
        if self._server is not None:
            return
        self.kv.load()
        server = RemotingServer(self.settings.host, self.settings.listen_port, tls=self.tls)
        self.processor.register_with(server)
        server.on_disconnect.append(self._connection_closed)
        await server.start()
        self._server = server
        await self._expiry.start()
        log.info("NameServer listening on %s:%d", self.settings.host, server.port)

    async def stop(self) -> None:
        await self._expiry.stop()
        server, self._server = self._server, None
        if server is not None:
            server.on_disconnect.remove(self._connection_closed)
            await server.stop()
            log.info("NameServer on port %d stopped", server.port)

    def _connection_closed(self, conn: Connection) -> None:
        for info in self.routes.connection_closed(conn):
            log.info(
                "broker %s of %s removed: its connection closed", info.broker_addr, info.cluster
            )
