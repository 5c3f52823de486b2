"""Requests on a connection: cancellation always propagates, deadlines, callbacks, `pending`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from rmqkit.errors import RemotingConnectError, RemotingError, RemotingTimeoutError
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import FLAG_RESPONSE, RemotingCommand
from rmqkit.protocol.frame import encode_frame
from rmqkit.remoting.client import RemotingClient
from rmqkit.remoting.connection import FLUSH_AT_BYTES, Connection
from rmqkit.remoting.server import RemotingServer
from rmqkit.testing import check_for

from .test_connection_writes import connect

ECHO = 1000
SILENT = 1001
"""The test server never answers this code (its processor returns None)."""


def response_to(opaque: int, remark: str = "ok") -> bytes:
    return encode_frame(RemotingCommand(ResponseCode.SUCCESS, opaque, FLAG_RESPONSE, remark))


async def connected(client: RemotingClient, addr: str) -> Connection:
    """The client's connection to `addr`, once it is open."""
    conn = await check_for(lambda: client.cached(addr))
    assert conn is not None
    return conn


def answer_all(conn: Connection) -> None:
    """The peer answers every pending request, in one read."""
    conn.data_received(b"".join(response_to(opaque) for opaque in list(conn.pending)))


# -- cancellation -------------------------------------------------------------------------------


async def test_a_cancel_in_the_loop_turn_of_the_response_propagates() -> None:
    conn, _ = connect(None)
    task = asyncio.create_task(conn.request(RemotingCommand(ECHO), 5))
    await check_for(lambda: conn.pending)
    answer_all(conn)  # the response is in...
    task.cancel()  # ...and the cancel comes before the task has run again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not conn.pending


async def test_a_request_loop_stops_at_its_cancel() -> None:
    # The shape that hung an app's shutdown: `while True` around a request, cancelled as one of
    # its responses arrives. With wait_for the cancel was swallowed and the loop went on.
    conn, _ = connect(None)
    answered = 0

    async def poll_forever() -> None:
        nonlocal answered
        while True:
            await conn.request(RemotingCommand(ECHO), 5)
            answered += 1

    task = asyncio.create_task(poll_forever())
    for n in range(1, 4):
        await check_for(lambda: conn.pending)
        answer_all(conn)
        await check_for(lambda n=n: answered == n)  # type: ignore[misc]
    await check_for(lambda: conn.pending)
    answer_all(conn)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert answered == 3 and not conn.pending


async def test_a_cancel_while_waiting_takes_the_request_out_of_pending() -> None:
    conn, _ = connect(None)
    task = asyncio.create_task(conn.request(RemotingCommand(ECHO), 5))
    await check_for(lambda: conn.pending)
    (opaque,) = conn.pending
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not conn.pending
    conn.data_received(response_to(opaque))  # a late response is dropped quietly


@pytest.fixture
async def server() -> AsyncIterator[RemotingServer]:
    srv = RemotingServer("127.0.0.1", 0)
    srv.register(ECHO, lambda conn, cmd: cmd.response(ResponseCode.SUCCESS, body=cmd.body))
    srv.register(SILENT, lambda conn, cmd: None)
    async with srv:
        yield srv


async def test_invoke_cancelled_as_its_response_arrives_raises_cancelled_error(
    server: RemotingServer,
) -> None:
    addr = f"127.0.0.1:{server.port}"
    async with RemotingClient() as client:
        task = asyncio.create_task(client.invoke(addr, RemotingCommand(SILENT), 5))
        conn = await connected(client, addr)
        await check_for(lambda: conn.pending)
        answer_all(conn)  # as if read from the socket, in this loop turn
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not conn.pending
        assert (await client.invoke(addr, RemotingCommand(ECHO, body=b"x"))).body == b"x"


async def test_cached_is_none_until_connected_and_after_close(server: RemotingServer) -> None:
    addr = f"127.0.0.1:{server.port}"
    client = RemotingClient()
    assert client.cached(addr) is None
    conn = await client.connection(addr)
    assert client.cached(addr) is conn
    await client.close()
    assert client.cached(addr) is None


# -- deadlines ----------------------------------------------------------------------------------


async def test_a_timeout_names_code_peer_and_timeout_and_leaves_nothing_pending() -> None:
    conn, _ = connect(None)
    with pytest.raises(
        RemotingTimeoutError, match=r"request code 1000 from 127\.0\.0\.1:4242 within 0\.05s"
    ):
        await conn.request(RemotingCommand(ECHO), 0.05)
    assert not conn.pending
    conn.data_received(response_to(1))  # a response after the deadline is dropped quietly


async def test_a_short_deadline_behind_a_long_one_still_expires(server: RemotingServer) -> None:
    addr = f"127.0.0.1:{server.port}"
    async with RemotingClient() as client:
        slow = asyncio.create_task(client.invoke(addr, RemotingCommand(SILENT), 60))
        conn = await connected(client, addr)
        await check_for(lambda: conn.pending)
        with pytest.raises(RemotingTimeoutError, match=r"within 0\.05s"):
            await client.invoke(addr, RemotingCommand(SILENT), 0.05)
        assert not slow.done() and len(conn.pending) == 1
        answer_all(conn)
        assert (await slow).remark == "ok"
        assert not conn.pending


async def test_expired_requests_go_together_and_the_rest_keep_waiting() -> None:
    conn, _ = connect(None)
    short = [asyncio.create_task(conn.request(RemotingCommand(ECHO), 0.05)) for _ in range(3)]
    long = asyncio.create_task(conn.request(RemotingCommand(SILENT), 60))
    await check_for(lambda: all(t.done() for t in short))
    assert all(isinstance(t.exception(), RemotingTimeoutError) for t in short)
    assert len(conn.pending) == 1 and not long.done()
    answer_all(conn)
    assert (await long).code == ResponseCode.SUCCESS


async def test_connection_loss_fails_every_pending_request() -> None:
    conn, transport = connect(None)
    tasks = [asyncio.create_task(conn.request(RemotingCommand(ECHO), 60)) for _ in range(3)]
    await check_for(lambda: len(conn.pending) == 3)
    transport.closed = True  # as a real transport is by the time it calls connection_lost
    conn.connection_lost(ConnectionResetError("reset by peer"))
    for t in tasks:
        with pytest.raises(RemotingConnectError, match="reset by peer"):
            await t
    assert not conn.pending
    with pytest.raises(RemotingConnectError, match="closed"):
        await conn.request(RemotingCommand(ECHO), 1)


# -- callbacks and futures without a coroutine --------------------------------------------------


async def test_send_request_calls_back_with_the_response_or_the_error() -> None:
    conn, transport = connect(None)
    got: list[RemotingCommand | RemotingError] = []
    conn.send_request(RemotingCommand(ECHO, body=b"one"), 5, got.append)
    assert not transport.writes  # written at the end of the loop turn, as any send
    await check_for(lambda: transport.writes)
    answer_all(conn)
    assert isinstance(got[0], RemotingCommand) and got[0].remark == "ok"

    conn.send_request(RemotingCommand(ECHO), 0.05, got.append)
    await check_for(lambda: len(got) == 2)
    assert isinstance(got[1], RemotingTimeoutError) and "within 0.05s" in str(got[1])

    conn.send_request(RemotingCommand(ECHO), 5, got.append)
    transport.closed = True
    conn.connection_lost(None)
    assert isinstance(got[2], RemotingConnectError)
    assert not conn.pending
    with pytest.raises(RemotingConnectError):
        conn.send_request(RemotingCommand(ECHO), 5, got.append)
    assert len(got) == 3 and not conn.pending


async def test_a_failing_callback_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn, _ = connect(None)
    got: list[RemotingCommand | RemotingError] = []

    def broken(reply: RemotingCommand | RemotingError) -> None:
        raise RuntimeError("callback bug")

    conn.send_request(RemotingCommand(ECHO), 5, broken)
    conn.send_request(RemotingCommand(ECHO), 5, got.append)
    with caplog.at_level(logging.ERROR, logger="rmqkit.remoting"):
        answer_all(conn)
    assert len(got) == 1 and not conn.pending
    assert "response callback" in caplog.text and "callback bug" in caplog.text


async def test_a_cancelled_start_request_future_leaves_pending_at_its_deadline() -> None:
    conn, _ = connect(None)
    fut = conn.start_request(RemotingCommand(ECHO), 0.05)
    assert len(conn.pending) == 1
    fut.cancel()
    await check_for(lambda: not conn.pending)
    fut2 = conn.start_request(RemotingCommand(ECHO), 5)
    answer_all(conn)
    assert (await fut2).remark == "ok"


# -- writes -------------------------------------------------------------------------------------


async def test_a_burst_past_the_flush_size_goes_out_at_once() -> None:
    conn, transport = connect(None)
    half = b"x" * (FLUSH_AT_BYTES // 2)
    conn.send(RemotingCommand(ECHO, body=half))
    assert not transport.writes
    conn.send(RemotingCommand(ECHO, body=half))  # now over FLUSH_AT_BYTES: written at once
    assert len(transport.writes) == 1
    conn.send(RemotingCommand(ECHO, body=b"small"))  # waits for the end of the loop turn
    assert len(transport.writes) == 1
    await check_for(lambda: len(transport.writes) == 2)
    assert len(transport.writes[0]) > FLUSH_AT_BYTES


async def test_a_request_that_cannot_be_encoded_leaves_nothing_pending() -> None:
    conn, _ = connect(None)
    bad = RemotingCommand(ECHO, ext_fields={"x": object()})  # type: ignore[dict-item]
    with pytest.raises(TypeError):  # orjson's JSONEncodeError
        await conn.request(bad, 5)
    assert not conn.pending
    good = asyncio.create_task(conn.request(RemotingCommand(ECHO), 5))
    await check_for(lambda: conn.pending)
    answer_all(conn)
    assert (await good).remark == "ok"


@pytest.mark.parametrize("addr", ["127.0.0.1", "127.0.0.1:x", "127.0.0.1:739335087"])
async def test_an_address_that_is_not_host_and_port_is_a_connect_error(addr: str) -> None:
    client = RemotingClient()
    with pytest.raises(RemotingConnectError, match=r"host:port|past 65535"):
        await client.invoke(addr, RemotingCommand(ECHO), 1.0)
    await client.close()
