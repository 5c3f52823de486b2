"""Connection internals on a fake transport: coalesced writes and eagerly started handlers."""

from __future__ import annotations

import asyncio

from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.frame import FrameDecoder, encode_frame
from rmqkit.remoting.connection import Connection
from rmqkit.testing import check_for


class FakeTransport(asyncio.Transport):
    """Records every write call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def writelines(self, list_of_data: object) -> None:
        self.writes.append(b"".join(list_of_data))  # type: ignore[arg-type]

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 4242) if name == "peername" else default


def connect(handler: object) -> tuple[Connection, FakeTransport]:
    conn = Connection(handler)  # type: ignore[arg-type]
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport


def requests(n: int) -> bytes:
    return b"".join(encode_frame(RemotingCommand(1000, opaque=i)) for i in range(1, n + 1))


def responses(transport: FakeTransport) -> list[RemotingCommand]:
    return FrameDecoder().feed(b"".join(transport.writes))


async def test_answers_to_one_read_leave_in_one_write() -> None:
    conn, transport = connect(lambda c, cmd: cmd.response(ResponseCode.SUCCESS))
    conn.data_received(requests(20))
    assert len(transport.writes) == 1
    assert [r.opaque for r in responses(transport)] == list(range(1, 21))


async def test_a_coroutine_that_never_waits_is_answered_without_a_task() -> None:
    async def handler(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return cmd.response(ResponseCode.SUCCESS, remark="at once")

    conn, transport = connect(handler)
    conn.data_received(requests(3))
    assert not conn.tasks
    assert [r.remark for r in responses(transport)] == ["at once"] * 3


async def test_a_coroutine_that_waits_finishes_in_a_task() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handler(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        await asyncio.sleep(0)
        remark = await gate
        return cmd.response(ResponseCode.SUCCESS, remark=remark)

    conn, transport = connect(handler)
    conn.data_received(requests(2))
    assert len(conn.tasks) == 2 and not transport.writes
    gate.set_result("later")
    await check_for(lambda: len(responses(transport)) == 2)
    assert {r.remark for r in responses(transport)} == {"later"}
    assert len(transport.writes) == 1  # both answers went out in the same loop turn


async def test_failures_before_and_after_the_first_wait_answer_system_error() -> None:
    async def handler(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        if cmd.opaque == 2:
            await asyncio.sleep(0)
        raise RuntimeError(f"kaput {cmd.opaque}")

    conn, transport = connect(handler)
    conn.data_received(requests(2))
    await check_for(lambda: len(responses(transport)) == 2)
    got = {r.opaque: (r.code, r.remark) for r in responses(transport)}
    assert got == {
        1: (ResponseCode.SYSTEM_ERROR, "RuntimeError: kaput 1"),
        2: (ResponseCode.SYSTEM_ERROR, "RuntimeError: kaput 2"),
    }


async def test_a_waiting_handler_is_cancelled_when_the_connection_is_lost() -> None:
    cancelled = asyncio.Event()

    async def handler(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return cmd.response(ResponseCode.SUCCESS)

    conn, _ = connect(handler)
    conn.data_received(requests(1))
    await asyncio.sleep(0)
    conn.connection_lost(None)
    await asyncio.wait_for(cancelled.wait(), 2)


async def test_frames_sent_just_before_close_still_go_out() -> None:
    conn, transport = connect(None)
    conn.send(RemotingCommand(40, ext_fields={"consumerGroup": "g"}))
    assert not transport.writes  # waits for the end of the loop turn...
    conn.close()  # ...unless the connection closes first
    assert transport.closed
    assert [c.code for c in responses(transport)] == [40]


async def test_a_handler_cancelled_before_its_task_ran_is_unwound() -> None:
    unwound = asyncio.Event()

    async def handler(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        try:
            await asyncio.sleep(10)
        finally:
            unwound.set()
        return cmd.response(ResponseCode.SUCCESS)

    conn, _ = connect(handler)
    conn.data_received(requests(1))
    conn.connection_lost(None)  # in the same loop turn: the task has not run a step yet,
    # and the handler, already started, is unwound when the cancelled task lets go of it
    await asyncio.wait_for(unwound.wait(), 2)
