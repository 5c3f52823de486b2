"""Health: readiness flips with marks and checks, liveness ignores marks, failing and hanging
checks report DOWN, and the NameServer check against real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest

from rmqkit.errors import ConfigurationError
from rmqkit.starter.observability import (
    NAME_SERVER_CHECK,
    CheckResult,
    Health,
    name_server_check,
)


async def test_an_app_with_nothing_registered_is_ready_and_alive() -> None:
    health = Health()
    assert (await health.readiness()).ok
    assert (await health.liveness()).ok


async def test_readiness_waits_for_the_producer_and_the_first_rebalance() -> None:
    health = Health()
    health.mark_producer("pg", started=False)
    health.mark_consumer("g1", started=False, rebalanced=False)
    report = await health.readiness()
    assert not report.ok
    assert report.checks["producer:pg"] == CheckResult(False, "not started")

    health.mark_producer("pg", started=True)
    health.mark_consumer("g1", started=True, rebalanced=False)
    report = await health.readiness()
    assert not report.ok
    assert report.checks["consumer:g1"] == CheckResult(
        False, "started, waiting for the first rebalance"
    )

    health.mark_consumer("g1", started=True, rebalanced=True)
    report = await health.readiness()
    assert report.ok, report.to_dict()
    assert set(report.checks) == {"producer:pg", "consumer:g1"}

    health.mark("consumer:g1", ready=False, detail="stopping")
    report = await health.readiness()
    assert not report.ok
    assert report.checks["consumer:g1"].detail == "stopping"


async def test_checks_may_be_sync_or_async_and_return_a_bool_or_a_pair() -> None:
    state = {"up": True}

    async def broker() -> tuple[bool, str]:
        return state["up"], "broker-a"

    health = Health()
    health.register("broker", broker)
    health.register("disk", lambda: True)
    report = await health.readiness()
    assert report.ok
    assert report.checks == {"broker": CheckResult(True, "broker-a"), "disk": CheckResult(True)}

    state["up"] = False
    report = await health.readiness()
    assert not report.ok
    assert report.checks["broker"] == CheckResult(False, "broker-a")


async def test_a_raising_check_is_down_with_the_reason() -> None:
    def broken() -> bool:
        raise OSError("connection refused")

    health = Health()
    health.register("store", broken)
    report = await health.readiness()
    assert not report.ok
    assert report.checks["store"] == CheckResult(False, "OSError: connection refused")


async def test_a_hanging_check_times_out_and_the_others_still_answer() -> None:
    never = asyncio.Event()

    async def hangs() -> bool:
        await never.wait()
        return True

    health = Health(check_timeout_s=0.05)
    health.register("hangs", hangs)
    health.register("fine", lambda: (True, "ok"))
    report = await health.readiness()
    assert not report.ok
    assert report.checks["hangs"] == CheckResult(False, "timed out after 0.05s")
    assert report.checks["fine"].ok


async def test_liveness_ignores_marks_and_readiness_ignores_liveness_only_checks() -> None:
    health = Health()
    health.mark_consumer("g1", started=True, rebalanced=False)
    health.register("loop", lambda: (False, "stuck"), readiness=False, liveness=True)
    live = await health.liveness()
    assert set(live.checks) == {"loop"}
    assert not live.ok
    ready = await health.readiness()
    assert set(ready.checks) == {"consumer:g1"}


async def test_unregister_removes_checks_and_marks() -> None:
    health = Health()
    health.register("flaky", lambda: False)
    health.mark("consumer:g1", ready=False)
    assert not (await health.readiness()).ok
    health.unregister("flaky")
    health.unregister("consumer:g1")
    health.unregister("never-registered")
    assert (await health.readiness()).checks == {}


def test_misuse_is_a_configuration_error() -> None:
    health = Health()
    health.register("nameserver", lambda: True)
    with pytest.raises(ConfigurationError, match="already registered"):
        health.register("nameserver", lambda: True)
    with pytest.raises(ConfigurationError, match="not a mark"):
        health.mark("nameserver", ready=True)
    with pytest.raises(ConfigurationError, match="readiness, liveness or both"):
        health.register("nowhere", lambda: True, readiness=False)
    with pytest.raises(ConfigurationError, match="check_timeout_s"):
        Health(check_timeout_s=0)


async def test_the_report_is_json_friendly() -> None:
    health = Health()
    health.mark_producer("pg", started=True)
    health.register("disk", lambda: (False, "98% full"))
    doc = json.loads(json.dumps((await health.readiness()).to_dict()))
    assert doc == {
        "status": "DOWN",
        "ok": False,
        "checks": {
            "disk": {"status": "DOWN", "ok": False, "detail": "98% full"},
            "producer:pg": {"status": "UP", "ok": True, "detail": "started"},
        },
    }


# -- the NameServer check, on real sockets -----------------------------------------------------


@pytest.fixture
async def listening_port() -> AsyncIterator[int]:
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: bound once to learn a free number, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_name_server_check_passes_when_one_address_answers(
    listening_port: int, closed_port: int
) -> None:
    check = name_server_check(f"127.0.0.1:{closed_port};127.0.0.1:{listening_port}")
    health = Health()
    health.register(NAME_SERVER_CHECK, check)
    result = (await health.readiness()).checks[NAME_SERVER_CHECK]
    assert result.ok
    assert f"reachable: 127.0.0.1:{listening_port}" in result.detail
    assert f"unreachable: 127.0.0.1:{closed_port}" in result.detail


async def test_name_server_check_fails_when_none_answers(closed_port: int) -> None:
    health = Health()
    health.register(NAME_SERVER_CHECK, name_server_check([f"127.0.0.1:{closed_port}"]))
    result = (await health.readiness()).checks[NAME_SERVER_CHECK]
    assert not result.ok
    assert result.detail.startswith(f"unreachable: 127.0.0.1:{closed_port} (")


@pytest.mark.parametrize("bad", ["", ";", "localhost", "host:port", ":9876"])
def test_name_server_check_rejects_malformed_addresses(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        name_server_check(bad)
