"""RemotingClient: one cached connection per address, requests with timeouts, one-way calls.

Requests the server sends to the client (CHECK_TRANSACTION_STATE, NOTIFY_CONSUMER_IDS_CHANGED)
go to the handler given at construction; `before_request` sees every request going out (the ACL
signature is added there). With `tls`, every connection is a TLS connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from types import TracebackType

from rmqkit.errors import RemotingConnectError
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.connection import Connection, RequestHandler
from rmqkit.remoting.tls import ClientTls


def split_addr(addr: str) -> tuple[str, int]:
    """`"127.0.0.1:9876"` or `"[::1]:9876"` to host and port."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise RemotingConnectError(f"address {addr!r} is not host:port")
    if int(port) > 65535:
        raise RemotingConnectError(f"address {addr!r} has a port past 65535")
    return host.strip("[]"), int(port)


class RemotingClient:
    """Opens connections on demand and keeps them; `close()` closes them all."""

    def __init__(
        self,
        handler: RequestHandler | None = None,
        connect_timeout_s: float = 3.0,
        *,
        before_request: Callable[[RemotingCommand], None] | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        self.handler = handler
        self.tls = tls
        """None: plain connections (RocketMQ's `useTLS=false`)."""
        self.before_request = before_request
        """Given to every connection (see `Connection.before_request`): ACL signing."""
        self.connect_timeout_s = connect_timeout_s
        self._conns: dict[str, Connection] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def cached(self, addr: str) -> Connection | None:
        """The open connection to `addr` if there is one, without connecting (no await)."""
        conn = self._conns.get(addr)
        return conn if conn is not None and conn.is_open else None

    async def connection(self, addr: str) -> Connection:
        """The open connection to `addr`, connecting first if there is none.

        Raises:
            RemotingConnectError: the address is malformed, or nothing answers in time.
        """
        conn = self._conns.get(addr)
        if conn is not None and conn.is_open:
            return conn
        lock = self._locks.setdefault(addr, asyncio.Lock())
        async with lock:
            conn = self._conns.get(addr)
            if conn is not None and conn.is_open:
                return conn
            host, port = split_addr(addr)
            loop = asyncio.get_running_loop()
            tls = self.tls.context() if self.tls is not None else None
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives as the connection completes (and leave the socket open).
                async with asyncio.timeout(self.connect_timeout_s):
                    _, opened = await loop.create_connection(
                        lambda: Connection(self.handler, before_request=self.before_request),
                        host,
                        port,
                        ssl=tls,
                        server_hostname=host if tls is not None else None,
                        ssl_handshake_timeout=self.connect_timeout_s if tls is not None else None,
                    )
            except ssl.SSLError as exc:
                raise RemotingConnectError(f"cannot connect to {addr}: TLS: {exc}") from exc
            except (OSError, TimeoutError) as exc:
                hint = ""
                if tls is not None and isinstance(exc, ConnectionError):
                    hint = " (does the server accept TLS? tls.server.mode must not be disabled)"
                reason = str(exc) or type(exc).__name__
                raise RemotingConnectError(f"cannot connect to {addr}: {reason}{hint}") from exc
            opened.peer = addr
            self._conns[addr] = opened
            return opened

    async def invoke(
        self, addr: str, request: RemotingCommand, timeout_s: float = 3.0
    ) -> RemotingCommand:
        """Send `request` to `addr` and return the response (whatever its code).

        Raises:
            RemotingTimeoutError: no response within `timeout_s`.
            RemotingConnectError: no connection, or it closed before the response.
        """
        conn = await self.connection(addr)
        return await conn.request(request, timeout_s)

    async def invoke_oneway(self, addr: str, request: RemotingCommand) -> None:
        conn = await self.connection(addr)
        conn.oneway(request)

    async def close(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()
        for conn in conns:
            await conn.closed

    async def __aenter__(self) -> RemotingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
