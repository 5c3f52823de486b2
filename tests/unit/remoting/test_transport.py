"""The asyncio transport over real loopback sockets: matching, concurrency, bad input, timeouts."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest

from rmqkit.errors import RemotingConnectError, RemotingTimeoutError
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.frame import encode_frame
from rmqkit.remoting.client import RemotingClient
from rmqkit.remoting.connection import Connection
from rmqkit.remoting.server import RemotingServer
from rmqkit.testing import check_for

ECHO = 1000
SLOW = 1001
BOOM = 1002
ONEWAY_SINK = 1003


@pytest.fixture
async def server() -> AsyncIterator[RemotingServer]:
    srv = RemotingServer("127.0.0.1", 0, max_frame_bytes=64 * 1024)
    seen_oneway: list[RemotingCommand] = []
    srv.seen_oneway = seen_oneway  # type: ignore[attr-defined]

    def echo(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return cmd.response(ResponseCode.SUCCESS, ext_fields=cmd.ext_fields, body=cmd.body)

    async def slow(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        await asyncio.sleep(float(cmd.ext_fields["s"]))
        return cmd.response(ResponseCode.SUCCESS, remark="slow done")

    def boom(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        raise RuntimeError("kaput")

    def sink(conn: Connection, cmd: RemotingCommand) -> None:
        seen_oneway.append(cmd)

    srv.register(ECHO, echo)
    srv.register(SLOW, slow)
    srv.register(BOOM, boom)
    srv.register(ONEWAY_SINK, sink)
    async with srv:
        yield srv


@pytest.fixture
async def client() -> AsyncIterator[RemotingClient]:
    async with RemotingClient() as c:
        yield c


def addr(srv: RemotingServer) -> str:
    return f"127.0.0.1:{srv.port}"


async def test_request_response(server: RemotingServer, client: RemotingClient) -> None:
    r = await client.invoke(addr(server), RemotingCommand(ECHO, ext_fields={"a": "1"}, body=b"hi"))
    assert (r.code, r.ext_fields, r.body, r.is_response) == (0, {"a": "1"}, b"hi", True)


async def test_unknown_code_and_failing_processor(
    server: RemotingServer, client: RemotingClient
) -> None:
    r = await client.invoke(addr(server), RemotingCommand(4242))
    assert r.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
    assert r.remark == "request type 4242 not supported"
    r = await client.invoke(addr(server), RemotingCommand(BOOM))
    assert r.code == ResponseCode.SYSTEM_ERROR and "kaput" in (r.remark or "")


async def test_a_slow_request_does_not_block_the_connection(
    server: RemotingServer, client: RemotingClient
) -> None:
    slow = asyncio.ensure_future(
        client.invoke(addr(server), RemotingCommand(SLOW, ext_fields={"s": "0.5"}), 5)
    )
    fast = await client.invoke(addr(server), RemotingCommand(ECHO, body=b"fast"))
    assert fast.body == b"fast" and not slow.done()  # answered out of order
    assert (await slow).remark == "slow done"
    assert len(server.connections) == 1


async def test_oneway_gets_no_reply(server: RemotingServer, client: RemotingClient) -> None:
    await client.invoke_oneway(addr(server), RemotingCommand(ONEWAY_SINK, ext_fields={"x": "y"}))
    seen = server.seen_oneway  # type: ignore[attr-defined]
    await check_for(lambda: len(seen) == 1)
    assert seen[0].is_oneway


async def test_garbage_closes_only_that_connection(
    server: RemotingServer, client: RemotingClient
) -> None:
    await client.invoke(addr(server), RemotingCommand(ECHO))
    for junk in (b"\xff" * 16, struct.pack(">i", 10_000_000), struct.pack(">ii", 7, 3) + b"{{{"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(junk)
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed by the server
        writer.close()
    r = await client.invoke(addr(server), RemotingCommand(ECHO, body=b"still"))
    assert r.body == b"still"


async def test_server_initiated_request_reaches_the_client_handler(server: RemotingServer) -> None:
    got: list[RemotingCommand] = []

    def on_check(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        got.append(cmd)
        return cmd.response(ResponseCode.SUCCESS, remark="client answers")

    async with RemotingClient(handler=on_check) as c:
        await c.invoke(addr(server), RemotingCommand(ECHO))
        (srv_conn,) = server.connections
        r = await srv_conn.request(
            RemotingCommand(RequestCode.CHECK_TRANSACTION_STATE, ext_fields={"msgId": "M"}), 2
        )
        assert r.remark == "client answers" and got[0].ext_fields == {"msgId": "M"}


async def test_timeout_and_connection_loss(server: RemotingServer, client: RemotingClient) -> None:
    with pytest.raises(RemotingTimeoutError, match=r"within 0\.1s"):
        await client.invoke(addr(server), RemotingCommand(SLOW, ext_fields={"s": "1"}), 0.1)
    pending = asyncio.ensure_future(
        client.invoke(addr(server), RemotingCommand(SLOW, ext_fields={"s": "5"}), 10)
    )
    await check_for(lambda: any(c.tasks for c in server.connections))
    for conn in list(server.connections):
        conn.close()
    with pytest.raises(RemotingConnectError):
        await pending
    r = await client.invoke(addr(server), RemotingCommand(ECHO))  # reconnects
    assert r.code == 0


async def test_cannot_connect_is_a_clear_error() -> None:
    srv = RemotingServer("127.0.0.1", 0)
    await srv.start()
    port = srv.port
    await srv.stop()
    async with RemotingClient() as c:
        with pytest.raises(RemotingConnectError, match=f"127.0.0.1:{port}"):
            await c.invoke(f"127.0.0.1:{port}", RemotingCommand(ECHO))


async def test_idle_connections_are_closed() -> None:
    async with RemotingServer("127.0.0.1", 0, idle_timeout_s=0.2) as srv:
        _reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(encode_frame(RemotingCommand(ECHO)))
        await check_for(lambda: not srv.connections, timeout=3)
        writer.close()


async def test_stop_waits_for_requests_in_progress(server: RemotingServer) -> None:
    c = RemotingClient()
    slow = asyncio.ensure_future(
        c.invoke(addr(server), RemotingCommand(SLOW, ext_fields={"s": "0.3"}), 5)
    )
    await check_for(lambda: any(conn.tasks for conn in server.connections))
    await server.stop()
    assert (await slow).remark == "slow done"
    await c.close()
