"""One remoting connection: frames in and out, requests matched to responses by opaque.

An `asyncio.Protocol` with a byte buffer (no await per frame). Requests from the peer go to a
handler; a handler that answers at once costs no task, one that needs to wait (long polling)
returns an awaitable and gets a task, so it never blocks the other requests on the connection.
A coroutine is first run eagerly up to its first suspension (as 3.12's eager tasks do): one that
never suspends (an ASYNC_FLUSH send) is answered at once and costs no task either.
Responses may go back in any order: the peer matches them by opaque.

With a `run_handler`, the requests of one read (a pipelining peer sends dozens) are handed over
together: a handler can then take them stage by stage, each stage in a loop over all of them,
instead of every request passing through every stage in turn. Measured, a pipelining
producer's sends cost the broker a fifth to a third less CPU this way (docs/benchmarks.md).

A request waits in `pending` (RocketMQ's `responseTable`) until its response arrives or its
deadline passes. Deadlines are kept by one timer per connection, armed for the soonest one (a
sweep, as RocketMQ's `scanResponseTable`, but on time): no `wait_for` and no timer per request.

Writes are coalesced: frames produced while a read is handled go out in one write at its end, and
frames sent from elsewhere (tasks, timers) in one write per loop turn, not one syscall per frame;
a write goes out early once `FLUSH_AT_BYTES` are waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from types import CoroutineType
from typing import Any, TypeAlias, cast

from rmqkit.errors import RemotingConnectError, RemotingError, RemotingTimeoutError
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import FLAG_ONEWAY, FLAG_RESPONSE, RemotingCommand
from rmqkit.protocol.frame import (
    DEFAULT_MAX_FRAME_BYTES,
    FrameDecoder,
    FrameError,
    encode_frame_parts,
)
from rmqkit.remoting.eager import start_eagerly

log = logging.getLogger("rmqkit.remoting")

HandlerResult = RemotingCommand | None | Awaitable[RemotingCommand | None]
RequestHandler: TypeAlias = "Callable[[Connection, RemotingCommand], HandlerResult]"
"""Answers a peer's request: a response, None (no reply), or an awaitable of one."""
RunHandler: TypeAlias = "Callable[[Connection, list[RemotingCommand]], list[HandlerResult]]"
"""Answers the requests of one read together, a result for each in their order (see
`Connection`); a handler that answers some of them later itself returns None for those."""
ResponseCallback: TypeAlias = "Callable[[RemotingCommand | RemotingError], None]"
"""Gets a request's response, or the `RemotingError` that ended the wait (`send_request`)."""
PendingRequest: TypeAlias = (
    "tuple[asyncio.Future[RemotingCommand] | ResponseCallback, float, int, float]"
)
"""A request waiting for its response: who gets it, deadline (loop time), code, timeout in s."""
_opaques = itertools.count(1)
FLUSH_AT_BYTES = 64 * 1024
"""Frames waiting this long are written at once, not at the end of the loop turn: a burst of
sends reaches the peer in pieces it can start on while the rest are made (pipelining)."""


class Connection(asyncio.Protocol):
    """Both ends use it: the server for accepted sockets, the client for the ones it opens."""

    def __init__(
        self,
        handler: RequestHandler | None = None,
        *,
        run_handler: RunHandler | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        on_close: Callable[[Connection], None] | None = None,
        before_request: Callable[[RemotingCommand], None] | None = None,
    ) -> None:
        self.handler = handler
        self.run_handler = run_handler
        """Takes the requests of a read when there are several; else `handler` takes each."""
        self.before_request = before_request
        """Called with each request (and one-way call) this side sends, just before it is
        written: the client's ACL signing (RocketMQ's `RPCHook.doBeforeRequest`)."""
        self.decoder = FrameDecoder(max_frame_bytes)
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.peer_host: tuple[str, int] = ("127.0.0.1", 0)
        self.pending: dict[int, PendingRequest] = {}
        """Requests waiting for a response, by opaque."""
        self.tasks: set[asyncio.Task[None]] = set()
        self.last_active = time.monotonic()
        self.closed = asyncio.get_running_loop().create_future()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes | memoryview] = []
        """Frames not yet handed to the transport (see `_flush`)."""
        self._out_bytes = 0
        self._reading = False
        """True while `data_received` handles a read: it flushes at its end."""
        self._flush_scheduled = False
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = math.inf
        """When `_sweep` fires: the soonest deadline in `pending` it knew of (inf: not armed)."""

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
            reason: object = exc
            if data[:2] == b"\x16\x03":  # a TLS record, not a remoting frame
                reason = "a TLS handshake, and this server does not accept TLS"
            log.warning("closing connection from %s: %s", self.peer, reason)
            self.close()
            return
        self._reading = True
        try:
            pending = self.pending
            run: list[RemotingCommand] | None = (
                [] if self.run_handler is not None and len(commands) > 1 else None
            )
            for cmd in commands:
                if cmd.flag & FLAG_RESPONSE:
                    waiting = pending.pop(cmd.opaque, None)
                    if waiting is not None:
                        self._deliver(waiting[0], cmd)
                elif run is None:
                    self._handle(cmd)
                else:
                    run.append(cmd)
            if run:
                self._handle_run(run)
        finally:
            self._reading = False
            self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        err = RemotingConnectError(
            f"connection to {self.peer} closed" + (f": {exc}" if exc else "")
        )
        pending, self.pending = self.pending, {}
        for waiter, *_ in pending.values():
            self._deliver(waiter, err)
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep, self._sweep_at = None, math.inf
        self._out.clear()
        self._out_bytes = 0
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
        except Exception as exc:
            result = self.failed([cmd], exc)[0]
        self._finish(cmd, result)

    def _handle_run(self, cmds: list[RemotingCommand]) -> None:
        assert self.run_handler is not None
        try:
            results = self.run_handler(self, cmds)
        except Exception as exc:  # a fault of the run handler's own: each request fails
            results = list(self.failed(cmds, exc))
        for cmd, result in zip(cmds, results, strict=True):
            self._finish(cmd, result)

    def failed(self, cmds: list[RemotingCommand], exc: Exception) -> list[RemotingCommand]:
        """Log `exc` once; the SYSTEM_ERROR answers to the requests it failed."""
        log.error("request %d from %s failed", cmds[0].code, self.peer, exc_info=exc)
        remark = f"{type(exc).__name__}: {exc}"
        return [cmd.response(ResponseCode.SYSTEM_ERROR, remark) for cmd in cmds]

    def _finish(self, cmd: RemotingCommand, result: HandlerResult) -> None:
        """Answer `cmd` with `result`: now, or from a task once an awaitable result is ready."""
        if type(result) is CoroutineType:
            try:
                _, result = start_eagerly(result)
            except Exception as exc:
                result = self.failed([cmd], exc)[0]
        if isinstance(result, RemotingCommand) or result is None:
            self.reply(cmd, result)
        else:
            self.track(self._await_reply(cmd, result))

    def track(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in a task the connection keeps: the server's stop waits for it, and the
        connection does not count as idle meanwhile. For handlers that answer later."""
        task = self._loop.create_task(work)
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
            result = self.failed([cmd], exc)[0]
        self.reply(cmd, result)

    def reply(self, cmd: RemotingCommand, response: RemotingCommand | None) -> None:
        """Answer the peer's request `cmd` (nothing for None, or when it was one-way)."""
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
        if self.is_open:
            self._write(cmd)

    def _write(self, cmd: RemotingCommand) -> None:
        head, body = encode_frame_parts(cmd)
        out = self._out
        out.append(head)
        if body:
            out.append(body)
        waiting = self._out_bytes + len(head) + len(body)
        if waiting >= FLUSH_AT_BYTES:
            self._write_out()
        else:
            self._out_bytes = waiting
            if not self._reading and not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Hand every frame waiting in `_out` to the transport in one write."""
        self._flush_scheduled = False
        self._write_out()

    def _write_out(self) -> None:
        out = self._out
        if not out:
            return
        self._out = []
        self._out_bytes = 0
        if self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(out)

    async def drain(self) -> None:
        """Wait while the peer is not reading (the write buffer is over its high-water mark)."""
        await self._can_write.wait()

    async def request(self, cmd: RemotingCommand, timeout_s: float) -> RemotingCommand:
        """Send a request and wait for its response.

        Raises:
            RemotingTimeoutError: no response within `timeout_s`.
            RemotingConnectError: the connection is closed, or closes before the response.
        """
        fut = self.start_request(cmd, timeout_s)
        try:
            # A plain await: a cancellation of the caller always propagates, even one that
            # arrives in the loop turn the response does (3.11's wait_for can swallow it).
            return await fut
        except asyncio.CancelledError:
            self.pending.pop(cmd.opaque, None)
            raise

    def start_request(
        self, cmd: RemotingCommand, timeout_s: float
    ) -> asyncio.Future[RemotingCommand]:
        """Send a request now; the future gets its response.

        Cancelling the future does not take the request back: its entry in `pending` goes when
        the response comes or the deadline passes.

        Returns:
            A future that gets the response (whatever its code), or fails with
            `RemotingTimeoutError` after `timeout_s`, or `RemotingConnectError` when the
            connection closes first.

        Raises:
            RemotingConnectError: the connection is closed.
        """
        fut: asyncio.Future[RemotingCommand] = self._loop.create_future()
        self.send_request(cmd, timeout_s, fut)
        return fut

    def send_request(
        self,
        cmd: RemotingCommand,
        timeout_s: float,
        on_response: ResponseCallback | asyncio.Future[RemotingCommand],
    ) -> None:
        """Send a request now; `on_response` gets its response or the error that ended the wait.

        For callers that go on with callbacks instead of a coroutine per request (the producer's
        `send_async`). A callback is called at once as the response is read (or as the
        deadline passes, or the connection closes), so it must be quick and must not raise; a
        future gets the outcome set.

        Args:
            cmd: the request; its opaque is assigned here.
            timeout_s: how long to wait; then `on_response` gets a `RemotingTimeoutError`
                naming the code, the peer and the timeout.
            on_response: called with the response (whatever its code) or with the
                `RemotingTimeoutError` / `RemotingConnectError`; or a future to set.

        Raises:
            RemotingConnectError: the connection is closed (`on_response` is not called).
        """
        if not self.is_open:
            raise RemotingConnectError(f"connection to {self.peer} is closed")
        opaque = cmd.opaque = next(_opaques)
        if self.before_request is not None:
            self.before_request(cmd)
        # Written first: a command that cannot be encoded raises with nothing left pending (the
        # response cannot come before the loop reads again, whatever the write does).
        self._write(cmd)
        deadline = self._loop.time() + timeout_s
        self.pending[opaque] = (on_response, deadline, cmd.code, timeout_s)
        if deadline < self._sweep_at:
            self._arm_sweep(deadline)

    def _deliver(
        self,
        waiter: asyncio.Future[RemotingCommand] | ResponseCallback,
        outcome: RemotingCommand | RemotingError,
    ) -> None:
        if isinstance(waiter, asyncio.Future):
            if waiter.done():  # cancelled by whoever waited
                return
            if isinstance(outcome, RemotingCommand):
                waiter.set_result(outcome)
            else:
                waiter.set_exception(outcome)
            return
        try:
            waiter(outcome)
        except Exception:
            log.exception("response callback for %s failed", self.peer)

    def _arm_sweep(self, when: float) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep_at = when
        self._sweep = self._loop.call_at(when, self._expire)

    def _expire(self) -> None:
        """Fail the requests whose deadline has passed; arm the timer for the next deadline."""
        self._sweep, self._sweep_at = None, math.inf
        now = self._loop.time()
        pending = self.pending
        expired: list[int] = []
        soonest = math.inf
        for opaque, (waiter, deadline, _, _) in pending.items():
            if deadline <= now or (isinstance(waiter, asyncio.Future) and waiter.done()):
                expired.append(opaque)  # a done future: its waiter was cancelled
            elif deadline < soonest:
                soonest = deadline
        for opaque in expired:
            waiter, _, code, timeout_s = pending.pop(opaque)
            self._deliver(waiter, RemotingTimeoutError(
                f"no response to request code {code} from {self.peer} within {timeout_s}s"
            ))  # fmt: skip
        if soonest < math.inf:
            self._arm_sweep(soonest)

    def oneway(self, cmd: RemotingCommand) -> None:
        """Send a request that expects no response."""
        if not self.is_open:
            raise RemotingConnectError(f"connection to {self.peer} is closed")
        cmd.opaque = next(_opaques)
        cmd.flag |= FLAG_ONEWAY
        if self.before_request is not None:
            self.before_request(cmd)
        self.send(cmd)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._flush()  # frames sent before close() still go out
            self.transport.close()
