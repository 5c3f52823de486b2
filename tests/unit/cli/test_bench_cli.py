"""`rmqkit bench producer|consumer` against a real NameServer and broker (short runs)."""

from __future__ import annotations

import asyncio
import re

import pytest
from click.testing import CliRunner, Result

from rmqkit.cli.main import cli
from tests.integration.conftest import Cluster, cluster  # noqa: F401 -- the fixture, reused

pytestmark = pytest.mark.integration

SEND_SUMMARY = re.compile(
    r"\[Complete\] Send Total: (\d+) \| Send TPS: (\d+) \| Max RT\(ms\): ([\d.]+) \| "
    r"Average RT\(ms\): +([\d.]+) \| Send Failed: (\d+) \| Response Failed: (\d+)"
)
CONSUME_SUMMARY = re.compile(
    r"\[Complete\] Consume Total: (\d+) \| Consume TPS: (\d+) \| AVG\(B2C\) RT\(ms\): +([\d.]+) "
    r"\| MAX\(B2C\) RT\(ms\): (\d+) \| AVG\(S2C\) RT\(ms\): +([\d.]+) \| MAX\(S2C\) RT\(ms\): "
    r"(\d+) \| Consume Fail: (\d+)"
)


async def invoke(args: list[str]) -> Result:
    # The command runs its own event loop: in a thread, while the broker serves on this one.
    return await asyncio.to_thread(CliRunner().invoke, cli, args, catch_exceptions=False)


async def test_producer_for_a_duration(cluster: Cluster) -> None:  # noqa: F811
    await cluster.create_topic("BenchA", 4)
    result = await invoke(["bench", "producer", "-n", cluster.ns, "-t", "BenchA", "-w", "8", "-s",
                           "256", "--tag", "TagA", "--keys", "--duration", "1.5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    m = SEND_SUMMARY.search(result.output)
    assert m, result.output
    total, tps, max_rt, avg_rt, send_failed, response_failed = m.groups()
    assert int(total) > 0 and int(tps) > 0
    assert float(max_rt) >= float(avg_rt) > 0
    assert (send_failed, response_failed) == ("0", "0")
    assert "Current Time:" in result.output  # at least one per-second line
    stored = sum(cluster.broker.store.get_max_offset("BenchA", q) for q in range(4))
    assert stored == int(total)


async def test_producer_batches_up_to_a_count_then_consumer(
    cluster: Cluster,  # noqa: F811
) -> None:
    await cluster.create_topic("BenchB", 2)
    result = await invoke(["bench", "producer", "-n", cluster.ns, "-t", "BenchB", "-w", "3",
                           "-b", "4", "--count", "50", "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    m = SEND_SUMMARY.search(result.output)
    assert m, result.output
    assert m.group(1) == "50" and m.group(5) == "0" and m.group(6) == "0"
    assert sum(cluster.broker.store.get_max_offset("BenchB", q) for q in range(2)) == 50

    result = await invoke(["bench", "consumer", "-n", cluster.ns, "-t", "BenchB", "-g", "bench-g",
                           "--from-first", "--count", "50"])  # fmt: skip
    assert result.exit_code == 0, result.output
    c = CONSUME_SUMMARY.search(result.output)
    assert c, result.output
    total, tps, avg_b2c, max_b2c, avg_s2c, max_s2c, failed = c.groups()
    assert int(total) == 50 and int(tps) > 0 and failed == "0"
    assert float(avg_b2c) >= float(avg_s2c) >= 0  # born before stored
    assert int(max_b2c) >= int(max_s2c)


def test_batches_of_delayed_messages_are_refused() -> None:
    result = CliRunner().invoke(cli, ["bench", "producer", "-b", "2", "-e", "3"])
    assert result.exit_code == 2
    assert "cannot hold delayed messages" in result.output
