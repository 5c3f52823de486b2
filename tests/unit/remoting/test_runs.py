"""The requests of one read handed over together: `Connection.run_handler` and the server's runs."""

from __future__ import annotations

import asyncio

from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.frame import encode_frame
from rmqkit.remoting.connection import Connection, HandlerResult
from rmqkit.remoting.server import RemotingServer
from rmqkit.testing import check_for

from .test_connection_writes import FakeTransport, responses

A, B = 1001, 1002


def frames(*codes: int) -> bytes:
    return b"".join(
        encode_frame(RemotingCommand(code, opaque=i, ext_fields={"n": str(i)}))
        for i, code in enumerate(codes, start=1)
    )


def answered(transport: FakeTransport) -> dict[int, tuple[int, str | None]]:
    """opaque -> (code, remark) of every response written."""
    return {r.opaque: (r.code, r.remark) for r in responses(transport) if r.is_response}


class Recorder:
    """A processor that answers with its name and records how it was called."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[list[int]] = []

    def __call__(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        self.calls.append([cmd.opaque])
        return cmd.response(ResponseCode.SUCCESS, f"{self.name} {cmd.opaque}")

    def run(self, conn: Connection, cmds: list[RemotingCommand]) -> list[HandlerResult]:
        self.calls.append([c.opaque for c in cmds])
        return [c.response(ResponseCode.SUCCESS, f"{self.name} run {c.opaque}") for c in cmds]


def served(server: RemotingServer) -> tuple[Connection, FakeTransport]:
    conn = server._new_connection()
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport


async def test_consecutive_requests_of_a_run_code_go_to_its_run_together() -> None:
    server = RemotingServer()
    a, b = Recorder("a"), Recorder("b")
    server.register(A, a, run=a.run)
    server.register(B, b)  # no run: one by one
    conn, transport = served(server)
    conn.data_received(frames(A, A, A, B, B, A, 999))
    assert a.calls == [[1, 2, 3], [6]] and b.calls == [[4], [5]]
    got = answered(transport)
    assert [got[i][1] for i in range(1, 7)] == [
        "a run 1", "a run 2", "a run 3", "b 4", "b 5", "a 6",
    ]  # fmt: skip
    assert got[7][0] == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
    assert len(transport.writes) == 1  # the answers to one read still leave in one write


async def test_a_single_request_takes_the_plain_path() -> None:
    server = RemotingServer()
    a = Recorder("a")
    server.register(A, a, run=a.run)
    conn, transport = served(server)
    conn.data_received(frames(A))
    assert a.calls == [[1]] and answered(transport)[1][1] == "a 1"


async def test_a_failing_request_fails_alone_and_a_failing_run_fails_its_requests() -> None:
    server = RemotingServer()

    def flaky(conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        if cmd.opaque == 2:
            raise ValueError("two is bad")
        return cmd.response(ResponseCode.SUCCESS)

    def broken_run(conn: Connection, cmds: list[RemotingCommand]) -> list[HandlerResult]:
        raise RuntimeError("the run broke")

    server.register(B, flaky)
    server.register(A, flaky, run=broken_run)
    conn, transport = served(server)
    conn.data_received(frames(B, B, B, A, A))
    got = answered(transport)
    assert [got[i][0] for i in (1, 3)] == [ResponseCode.SUCCESS] * 2
    assert got[2] == (ResponseCode.SYSTEM_ERROR, "ValueError: two is bad")
    assert got[4] == got[5] == (ResponseCode.SYSTEM_ERROR, "RuntimeError: the run broke")


async def test_the_guard_refuses_requests_of_a_run_in_their_places() -> None:
    server = RemotingServer()
    a = Recorder("a")
    server.register(A, a, run=a.run)
    server.guard = lambda conn, cmd: (
        cmd.response(ResponseCode.NO_PERMISSION, "no") if cmd.opaque % 2 == 0 else None
    )
    conn, transport = served(server)
    conn.data_received(frames(A, A, A, A, A))
    assert a.calls == [[1, 3, 5]]
    got = answered(transport)
    assert [got[i] for i in range(1, 6)] == [
        (ResponseCode.SUCCESS, "a run 1"), (ResponseCode.NO_PERMISSION, "no"),
        (ResponseCode.SUCCESS, "a run 3"), (ResponseCode.NO_PERMISSION, "no"),
        (ResponseCode.SUCCESS, "a run 5"),
    ]  # fmt: skip


async def test_a_run_answered_later_is_tracked_until_its_task_replies() -> None:
    server = RemotingServer()
    gate = asyncio.Event()

    def later(conn: Connection, cmds: list[RemotingCommand]) -> list[HandlerResult]:
        async def answer() -> None:
            await gate.wait()
            for c in cmds:
                conn.reply(c, c.response(ResponseCode.SUCCESS, "later"))

        conn.track(answer())
        return [None] * len(cmds)

    server.register(A, Recorder("a"), run=later)
    conn, transport = served(server)
    conn.data_received(frames(A, A, A))
    assert not transport.writes and len(conn.tasks) == 1
    gate.set()
    await check_for(lambda: len(answered(transport)) == 3)
    assert set(answered(transport).values()) == {(ResponseCode.SUCCESS, "later")}
    await check_for(lambda: not conn.tasks)


async def test_responses_in_a_read_reach_their_waiters_beside_a_run() -> None:
    server = RemotingServer()
    a = Recorder("a")
    server.register(A, a, run=a.run)
    conn, transport = served(server)
    fut = conn.start_request(RemotingCommand(B), timeout_s=5)
    opaque = next(iter(conn.pending))
    response = RemotingCommand(ResponseCode.SUCCESS, opaque=opaque, flag=1, remark="pong")
    reqs = [encode_frame(RemotingCommand(A, opaque=i)) for i in (101, 102, 103)]
    conn.data_received(reqs[0] + encode_frame(response) + reqs[1] + reqs[2])
    assert (await fut).remark == "pong"
    assert a.calls == [[101, 102, 103]] and len(answered(transport)) == 3
