"""One remoting connection: frames in and out, requests matched to responses by opaque.

An `asyncio.Protocol` with a byte buffer (no await per frame). Requests from the peer go to a
handler; a handler that answers at once costs no task, one that needs to wait (long polling)
returns an awaitable and gets a task, so it never blocks the other requests on the connection.
A coroutine is first run eagerly up to its first suspension (as 3.12's eager tasks do): one that
never suspends (an ASYNC_FLUSH send) is answered at once and costs no task either.
Responses may go back in any order: the peer matches them by opaque.

Writes are coalesced: frames produced while a read is handled go out in one write at its end, and
frames sent from elsewhere (tasks, timers) in one write per loop turn, not one syscall per frame.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import CoroutineType
from typing import Any, TypeAlias, cast

from rmqkit.errors import RemotingConnectError, RemotingTimeoutError
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import FLAG_ONEWAY, RemotingCommand
from rmqkit.protocol.frame import (
    DEFAULT_MAX_FRAME_BYTES,
    FrameDecoder,
    FrameError,
    encode_frame_parts,
)

log = logging.getLogger("rmqkit.remoting")

HandlerResult = RemotingCommand | None | Awaitable[RemotingCommand | None]
RequestHandler: TypeAlias = "Callable[[Connection, RemotingCommand], HandlerResult]"
"""Answers a peer's request: a response, None (no reply), or an awaitable of one."""
_opaques = itertools.count(1)


class Connection(asyncio.Protocol):
    """Both ends use it: the server for accepted sockets, the client for the ones it opens."""

    def __init__(
        self,
        handler: RequestHandler | None = None,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        on_close: Callable[[Connection], None] | None = None,
    ) -> None:
        self.handler = handler
        self.decoder = FrameDecoder(max_frame_bytes)
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.peer_host: tuple[str, int] = ("127.0.0.1", 0)
        self.pending: dict[int, asyncio.Future[RemotingCommand]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.last_active = time.monotonic()
        self.closed = asyncio.get_running_loop().create_future()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes | memoryview] = []
        """Frames not yet handed to the transport (see `_flush`)."""
        self._reading = False
        """True while `data_received` handles a read: it flushes at its end."""
        self._flush_scheduled = False

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's TCPTransport is not an asyncio.Transport subclass.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
            self.peer_host = (str(peer[0]), int(peer[1]))

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            commands = self.decoder.feed(data)
        except FrameError as exc:
            log.warning("closing connection from %s: %s", self.peer, exc)
            self.close()
            return
        self._reading = True
        try:
            for cmd in commands:
                if cmd.is_response:
                    fut = self.pending.pop(cmd.opaque, None)
                    if fut is not None and not fut.done():
                        fut.set_result(cmd)
                else:
                    self._handle(cmd)
        finally:
            self._reading = False
            self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        err = RemotingConnectError(
            f"connection to {self.peer} closed" + (f": {exc}" if exc else "")
        )
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(err)
        self.pending.clear()
        self._out.clear()
        for task in list(self.tasks):
            task.cancel()
        self._can_write.set()
        if not self.closed.done():
            self.closed.set_result(None)
        if self.on_close is not None:
            self.on_close(self)

    def pause_writing(self) -> None:
        self._can_write.clear()
        if self.transport is not None:
            self.transport.pause_reading()  # back-pressure: read no more until the peer reads

    def resume_writing(self) -> None:
        self._can_write.set()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- requests from the peer -------------------------------------------------------------------

    def _handle(self, cmd: RemotingCommand) -> None:
        if self.handler is None:
            if not cmd.is_oneway:
                self.send(cmd.response(ResponseCode.REQUEST_CODE_NOT_SUPPORTED, "no handler"))
            return
        try:
            result = self.handler(self, cmd)
            if type(result) is CoroutineType:
                try:
                    first = result.send(None)
                except StopIteration as done:
                    result = done.value
                else:
                    result = _Resumed(result, first)
        except Exception as exc:
            log.exception("request %d from %s failed", cmd.code, self.peer)
            result = cmd.response(ResponseCode.SYSTEM_ERROR, f"{type(exc).__name__}: {exc}")
        if isinstance(result, RemotingCommand) or result is None:
            self._reply(cmd, result)
        else:
            task = self._loop.create_task(self._await_reply(cmd, result))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _await_reply(
        self, cmd: RemotingCommand, pending: Awaitable[RemotingCommand | None]
    ) -> None:
        try:
            result = await pending
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("request %d from %s failed", cmd.code, self.peer)
            result = cmd.response(ResponseCode.SYSTEM_ERROR, f"{type(exc).__name__}: {exc}")
        self._reply(cmd, result)

    def _reply(self, cmd: RemotingCommand, response: RemotingCommand | None) -> None:
        if response is None or cmd.is_oneway:
            return
        response.opaque = cmd.opaque
        response.flag |= 1
        self.send(response)

    # -- sending ----------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, cmd: RemotingCommand) -> None:
        """Write one command; silently dropped when the connection is gone."""
        if not self.is_open:
            return
        head, body = encode_frame_parts(cmd)
        out = self._out
        out.append(head)
        if body:
            out.append(body)
        if not self._reading and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Hand every frame waiting in `_out` to the transport in one write."""
        self._flush_scheduled = False
        out = self._out
        if not out:
            return
        self._out = []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(out)

    async def drain(self) -> None:
        """Wait while the peer is not reading (the write buffer is over its high-water mark)."""
        await self._can_write.wait()

    async def request(self, cmd: RemotingCommand, timeout_s: float) -> RemotingCommand:
        """Send a request and wait for its response."""
        if not self.is_open:
            raise RemotingConnectError(f"connection to {self.peer} is closed")
        cmd.opaque = next(_opaques)
        fut: asyncio.Future[RemotingCommand] = asyncio.get_running_loop().create_future()
        self.pending[cmd.opaque] = fut
        self.send(cmd)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            raise RemotingTimeoutError(
                f"no response to request code {cmd.code} from {self.peer} within {timeout_s}s"
            ) from None
        finally:
            self.pending.pop(cmd.opaque, None)

    def oneway(self, cmd: RemotingCommand) -> None:
        """Send a request that expects no response."""
        if not self.is_open:
            raise RemotingConnectError(f"connection to {self.peer} is closed")
        cmd.opaque = next(_opaques)
        cmd.flag |= FLAG_ONEWAY
        self.send(cmd)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._flush()  # frames sent before close() still go out
            self.transport.close()


class _Resumed:
    """The rest of a handler coroutine that `_handle` ran up to its first suspension.

    Awaited inside a task, it passes what the coroutine yielded (the future it waits on) to the
    task, and resumes the coroutine as the task resumes it: `yield from`, minus its first step.
    """

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, RemotingCommand | None], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, None, RemotingCommand | None]:
        coro, value = self._coro, self._first
        while True:
            try:
                yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    return cast("RemotingCommand | None", done.value)
            else:
                try:
                    value = coro.send(None)
                except StopIteration as done:
                    return cast("RemotingCommand | None", done.value)
