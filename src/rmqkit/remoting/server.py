"""RemotingServer: accepts connections and dispatches requests to processors by request code.

RocketMQ's `NettyRemotingServer` with its code -> processor table. An unknown code is answered
REQUEST_CODE_NOT_SUPPORTED with Java's remark; a processor that raises is answered SYSTEM_ERROR;
a connection silent for longer than `idle_timeout_s` is closed. A `guard` (the broker's ACL)
sees each request first and may answer it instead of the processor. With `tls` in permissive or
enforcing mode, every accepted connection first passes a `TlsGate` (see `tls_session`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

from rmqkit.common.lifecycle import AsyncLifecycle
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.frame import DEFAULT_MAX_FRAME_BYTES
from rmqkit.remoting.connection import Connection, HandlerResult
from rmqkit.remoting.tls import ServerTls, TlsMode
from rmqkit.remoting.tls_session import TlsGate

log = logging.getLogger("rmqkit.remoting.server")

Processor = Callable[[Connection, RemotingCommand], HandlerResult]
RunProcessor = Callable[[Connection, list[RemotingCommand]], list[HandlerResult]]
"""Several requests of one code from one read, answered together (`register(..., run=...)`)."""
Guard = Callable[[Connection, RemotingCommand], RemotingCommand | None]
"""None lets a request through to its processor; a response refuses it."""


class RemotingServer(AsyncLifecycle):
    """Listens on `host:port` (port 0 picks a free one; `port` tells which)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        idle_timeout_s: float = 120.0,
        tls: ServerTls | None = None,
    ) -> None:
        self.host = host
        self.tls = tls
        """None or mode DISABLED: plain connections only."""
        self.port = port
        self.max_frame_bytes = max_frame_bytes
        self.idle_timeout_s = idle_timeout_s
        self.processors: dict[int, Processor] = {}
        self.run_processors: dict[int, RunProcessor] = {}
        self.connections: set[Connection] = set()
        self.on_disconnect: list[Callable[[Connection], None]] = []
        self.guard: Guard | None = None
        self._server: asyncio.Server | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._gates: set[TlsGate] = set()
        """Accepted connections that have not sent their first byte yet (TLS or not?)."""

    def register(self, code: int, processor: Processor, run: RunProcessor | None = None) -> None:
        """Route requests with `code` to `processor`; with `run`, consecutive requests with
        `code` in one read go to `run` together (see `Connection`)."""
        self.processors[int(code)] = processor
        if run is None:
            self.run_processors.pop(int(code), None)
        else:
            self.run_processors[int(code)] = run

    def _dispatch(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        if self.guard is not None:
            refused = self.guard(conn, cmd)
            if refused is not None:
                return refused
        processor = self.processors.get(cmd.code)
        if processor is None:
            return cmd.response(
                ResponseCode.REQUEST_CODE_NOT_SUPPORTED, f"request type {cmd.code} not supported"
            )
        return processor(conn, cmd)

    def _dispatch_run(self, conn: Connection, cmds: list[RemotingCommand]) -> list[HandlerResult]:
        """The requests of one read: runs of one code to their run processor, the rest one by
        one. A request that fails is answered SYSTEM_ERROR without failing the others."""
        out: list[HandlerResult] = []
        runs = self.run_processors
        i, n = 0, len(cmds)
        while i < n:
            code = cmds[i].code
            j = i + 1
            run = runs.get(code)
            if run is not None:
                while j < n and cmds[j].code == code:
                    j += 1
            if run is not None and j - i > 1:
                out.extend(self._run_group(conn, run, cmds[i:j]))
            else:
                for cmd in cmds[i:j]:
                    try:
                        out.append(self._dispatch(conn, cmd))
                    except Exception as exc:
                        out.append(conn.failed([cmd], exc)[0])
            i = j
        return out

    def _run_group(
        self, conn: Connection, run: RunProcessor, group: list[RemotingCommand]
    ) -> list[HandlerResult]:
        guard = self.guard
        refusals = None if guard is None else [guard(conn, c) for c in group]
        todo = (
            group
            if refusals is None
            else [c for c, r in zip(group, refusals, strict=True) if r is None]
        )
        try:
            results = run(conn, todo) if todo else []
        except Exception as exc:
            results = list(conn.failed(todo, exc))
        if refusals is None:
            return results
        answers = iter(results)
        return [next(answers) if r is None else r for r in refusals]

    def _closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        for cb in self.on_disconnect:
            try:
                cb(conn)
            except Exception:
                log.exception("disconnect callback failed")

    def _new_connection(self) -> Connection:
        conn = Connection(
            self._dispatch,
            run_handler=self._dispatch_run,
            max_frame_bytes=self.max_frame_bytes,
            on_close=self._closed,
        )
        self.connections.add(conn)
        return conn

    async def start(self, *, serving: bool = True) -> None:
        """Bind (port 0 picks a free port) and, unless `serving` is False, accept connections.

        Binding first and serving later lets the owner learn its port before the first request.
        """
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol_factory(), self.host, self.port, start_serving=serving
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._idle_timer = loop.call_later(self.idle_timeout_s / 4, self._close_idle)
        log.info("remoting server listening on %s:%d", self.host, self.port)

    def _protocol_factory(self) -> Callable[[], asyncio.Protocol]:
        tls = self.tls
        if tls is None or tls.mode is TlsMode.DISABLED:
            return self._new_connection
        if tls.cert_path is not None:
            context = tls.context()  # a configured certificate is checked before serving
            provider: Callable[[], ssl.SSLContext] = lambda: context  # noqa: E731
        else:
            provider = tls.context  # self-signed, made when the first TLS client comes
        mode = tls.mode

        def gate() -> TlsGate:
            g = TlsGate(
                self._new_connection,
                mode,
                provider,
                first_byte_timeout_s=self.idle_timeout_s,
                on_done=self._gates.discard,
            )
            self._gates.add(g)
            return g

        return gate

    async def serve(self) -> None:
        """Start accepting connections after `start(serving=False)`."""
        assert self._server is not None
        await self._server.start_serving()

    def _close_idle(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            if now - conn.last_active > self.idle_timeout_s and not conn.tasks:
                log.info("closing idle connection from %s", conn.peer)
                conn.close()
        self._idle_timer = asyncio.get_running_loop().call_later(
            self.idle_timeout_s / 4, self._close_idle
        )

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, let requests in progress finish (up to `grace_s`), close everything."""
        if self._server is None:
            return
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._server.close()
        pending = [t for c in self.connections for t in c.tasks]
        if pending:
            await asyncio.wait(pending, timeout=grace_s)
        for conn in list(self.connections):
            conn.close()
        for gate in list(self._gates):
            gate.close()
        await self._server.wait_closed()
        self._server = None
