"""Server-side TLS on a connection that has already started: the gate and the session.

A RocketMQ server in permissive mode serves plain and TLS clients on one port, and learns which
from the first byte a client sends: 0x16 opens every TLS handshake (a record of type
"handshake"), while a remoting frame starts with the high byte of its length, 0 for any frame
under 16 MiB. `TlsGate` reads that byte, then hands the socket to the remoting connection, or to
a `TlsSession` in front of it.

asyncio's own TLS (`start_tls`) cannot take over bytes already read, so `TlsSession` runs the
TLS state machine itself, over two memory BIOs: bytes from the socket go into one, the
decrypted data comes out to the connection; what the connection writes is encrypted into the
other and written to the socket. To the connection the session is its transport.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any

from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.connection import Connection
from rmqkit.remoting.tls import TlsMode

log = logging.getLogger("rmqkit.remoting.tls")

TLS_HANDSHAKE_RECORD = 0x16
"""First byte of a TLS ClientHello (content type 22, handshake)."""
HANDSHAKE_TIMEOUT_S = 10.0
"""A TLS handshake not done in this time is given up (Netty's SslHandler default)."""
_READ_BYTES = 256 * 1024


class TlsSession(asyncio.Transport, asyncio.Protocol):
    """One server-side TLS connection: the socket's protocol, and `app`'s transport."""

    def __init__(
        self,
        context: ssl.SSLContext,
        app: asyncio.Protocol,
        *,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
    ) -> None:
        super().__init__()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._app = app
        self._handshake_timeout_s = handshake_timeout_s
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._established = False
        self._closing = False
        self.peer = "?"

    # -- the socket's side (asyncio.Protocol) -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
        self._timer = asyncio.get_running_loop().call_later(
            self._handshake_timeout_s, self._too_slow
        )

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        if not self._established and not self._handshake():
            return
        self._read_records()

    def eof_received(self) -> bool | None:
        return None  # the socket transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._established:
            self._app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._established:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._established:
            self._app.resume_writing()

    def _handshake(self) -> bool:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._send_pending()
            return False
        except (ssl.SSLError, OSError) as exc:
            log.warning("closing connection from %s: TLS handshake failed: %s", self.peer, exc)
            self._send_pending()
            self._closing = True
            if self._transport is not None:
                self._transport.close()
            return False
        self._established = True
        if self._timer is not None:
            self._timer.cancel()
        self._send_pending()  # the server's last flight (and TLS 1.3 session tickets)
        self._app.connection_made(self)
        return True

    def _too_slow(self) -> None:
        if not self._established and self._transport is not None:
            log.warning(
                "closing connection from %s: no TLS handshake within %.0f s",
                self.peer,
                self._handshake_timeout_s,
            )
            self._closing = True
            self._transport.close()

    def _read_records(self) -> None:
        chunks: list[bytes] = []
        ended = False
        try:
            while True:
                chunk = self._ssl.read(_READ_BYTES)
                if not chunk:
                    ended = True
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            ended = True  # the client sent close_notify
        except ssl.SSLError as exc:
            log.warning("closing connection from %s: bad TLS record: %s", self.peer, exc)
            ended = True
        self._send_pending()
        if chunks and not self.is_closing():
            self._app.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if ended:
            self.close()

    def _send_pending(self) -> None:
        if self._outgoing.pending and self._transport is not None:
            data = self._outgoing.read()
            if not self._transport.is_closing():
                self._transport.write(data)

    # -- the application's side (asyncio.Transport) -----------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.is_closing():
            return
        self._encrypt(data)
        self._send_pending()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        if self.is_closing():
            return
        for data in list_of_data:
            self._encrypt(data)
        self._send_pending()

    def _encrypt(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[self._ssl.write(view) :]

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._established:
            try:
                self._ssl.unwrap()  # queues close_notify; the client's answer is not awaited
            except (ssl.SSLError, OSError):
                pass
            self._send_pending()
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def is_closing(self) -> bool:
        return self._closing or self._transport is None or self._transport.is_closing()

    def pause_reading(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport is not None and self._transport.is_reading()

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        size = self._outgoing.pending
        return size + (self._transport.get_write_buffer_size() if self._transport else 0)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._transport is not None:
            self._transport.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._ssl
        if name == "peercert":
            return self._ssl.getpeercert() if self._established else default
        if name == "cipher":
            return self._ssl.cipher()
        if name == "sslcontext":
            return self._ssl.context
        return self._transport.get_extra_info(name, default) if self._transport else default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._app = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._app


def _refuse_plain(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
    """The one answer a plain client gets from an enforcing server, before the close: the
    client then names the cause instead of a closed connection."""
    asyncio.get_running_loop().call_soon(conn.close)
    return cmd.response(
        ResponseCode.SYSTEM_ERROR,
        "this server accepts TLS connections only (tls.server.mode=enforcing); "
        "connect with TLS (tls.enable=true)",
    )


class TlsGate(asyncio.Protocol):
    """The first protocol of an accepted connection: picks plain or TLS by the first byte.

    `app_factory` makes the remoting connection; `context` gives the server's `SSLContext` (it
    may make a self-signed certificate the first time, so it is asked only when a TLS client
    comes). A connection that sends nothing within `first_byte_timeout_s` is closed.
    """

    def __init__(
        self,
        app_factory: Callable[[], asyncio.Protocol],
        mode: TlsMode,
        context: Callable[[], ssl.SSLContext],
        *,
        first_byte_timeout_s: float = 120.0,
        on_done: Callable[[TlsGate], None] | None = None,
    ) -> None:
        self._app_factory = app_factory
        self._mode = mode
        self._context = context
        self._first_byte_timeout_s = first_byte_timeout_s
        self._on_done = on_done
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.peer = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
        self._timer = asyncio.get_running_loop().call_later(self._first_byte_timeout_s, self.close)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        self._done()
        app: asyncio.Protocol
        if data[0] == TLS_HANDSHAKE_RECORD:
            if self._mode is TlsMode.DISABLED:
                log.warning(
                    "closing connection from %s: TLS, and tls.server.mode=disabled", self.peer
                )
                transport.close()
                return
            try:
                context = self._context()
            except Exception as exc:
                log.error(
                    "closing TLS connection from %s: no server certificate: %s", self.peer, exc
                )
                transport.close()
                return
            app = TlsSession(context, self._app_factory())
        elif self._mode is TlsMode.ENFORCING:
            log.warning(
                "closing connection from %s: not TLS, and tls.server.mode=enforcing "
                "(the client needs TLS on: tls.enable=true)",
                self.peer,
            )
            app = Connection(_refuse_plain)  # says why in a response, then closes
        else:
            app = self._app_factory()
        transport.set_protocol(app)
        app.connection_made(transport)
        app.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._done()

    def close(self) -> None:
        self._done()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _done(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_done is not None:
            on_done, self._on_done = self._on_done, None
            on_done(self)
