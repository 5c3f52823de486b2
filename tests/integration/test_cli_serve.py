"""`rmqkit serve` as users run it: a subprocess, RocketMQ's own config files, SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rmqkit.protocol.codes import RequestCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.client import RemotingClient
from rmqkit.server.broker.broker import Broker
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.server.properties import parse_properties, settings_from_properties
from rmqkit.testing import check_for

from .conftest import broker_settings

pytestmark = pytest.mark.integration

# RocketMQ's distribution/conf/2m-2s-sync/broker-a.properties and broker.conf, key for key.
BROKER_A_SYNC = """\
brokerClusterName=DefaultCluster
brokerName=broker-a
brokerId=0
deleteWhen=04
fileReservedTime=48
brokerRole=SYNC_MASTER
flushDiskType=ASYNC_FLUSH
"""
BROKER_CONF = """\
brokerClusterName = DefaultCluster
brokerName = broker-a
brokerId = 0
deleteWhen = 04
fileReservedTime = 48
brokerRole = ASYNC_MASTER
flushDiskType = ASYNC_FLUSH
enableAcl=true
namesrvAddr=127.0.0.1:9876
"""


def test_rocketmq_example_configs_are_read_without_surprises() -> None:
    warnings: list[str] = []
    s = settings_from_properties(parse_properties(BROKER_A_SYNC), warn=warnings.append)
    assert (s.broker_role, s.store.file_reserved_time_hours, s.store.delete_when) == (
        "SYNC_MASTER", 48, "04",
    )  # fmt: skip
    assert warnings == []
    s = settings_from_properties(parse_properties(BROKER_CONF), warn=warnings.append)
    assert s.namesrv_addrs == ["127.0.0.1:9876"]
    assert warnings == ["enableAcl: known to RocketMQ, not applied by rmqkit yet; ignored"]


def _serve(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rmqkit.cli.main", "serve", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "RMQKIT_LISTEN_HOST": "127.0.0.1"},
    )  # fmt: skip


async def test_serve_with_a_properties_file_registers_and_stops_on_sigterm(tmp_path: Path) -> None:
    async with NameServer(NameServerSettings(host="127.0.0.1", listen_port=0)) as ns:
        conf = tmp_path / "broker-a.properties"
        conf.write_text(
            BROKER_A_SYNC + f"namesrvAddr=127.0.0.1:{ns.port}\nlistenPort=0\n"
            "storePathRootDir=store-a\nmappedFileSizeCommitLog=1048576\nmaxMessageSize=65536\n"
        )
        proc = _serve(["--config", str(conf)], tmp_path)
        try:
            await _check_running_broker(proc, ns, tmp_path)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=20)


async def _check_running_broker(
    proc: subprocess.Popen[str], ns: NameServer, tmp_path: Path
) -> None:
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "listening on" in line:
            break
    m = re.search(r"listening on (127\.0\.0\.1:\d+)", seen[-1] if seen else "")
    assert m, "".join(seen)
    await check_for(lambda: ns.routes.cluster_info().broker_addr_table, timeout=5)
    assert (tmp_path / "store-a" / "commitlog").is_dir()
    async with RemotingClient() as c:
        cmd = RemotingCommand(RequestCode.GET_MAX_OFFSET, ext_fields={"topic": "x", "queueId": "0"})
        assert (await c.invoke(m.group(1), cmd, 5)).code == 0
    proc.send_signal(signal.SIGTERM)
    out = proc.stdout.read()
    assert proc.wait(timeout=20) == 0 and "stopped cleanly" in out, out
    await check_for(lambda: not ns.routes.cluster_info().broker_addr_table, timeout=5)


def test_bad_value_stops_start_up_naming_the_key(tmp_path: Path) -> None:
    conf = tmp_path / "bad.properties"
    conf.write_text("flushDiskType=FAST\nlistenPort=0\n")
    proc = _serve(["--config", str(conf)], tmp_path)
    out = proc.communicate(timeout=20)[0]
    assert proc.returncode != 0
    assert "flushDiskType='FAST'" in out and "SYNC_FLUSH" in out


def test_a_store_it_cannot_open_stops_start_up_with_one_clear_line(tmp_path: Path) -> None:
    log_dir = tmp_path / "data" / "store" / "commitlog"
    log_dir.mkdir(parents=True)
    # Not 1 GiB segments: copied short, or from a broker with another mapedFileSizeCommitLog.
    # (A short last segment alone is what a kill while creating it leaves: it is regrown.)
    for name in ("00000000000000000000", "00000000001073741824"):
        (log_dir / name).write_bytes(bytes(100))
    proc = _serve(["--data-dir", str(tmp_path / "data"), "--port", "0", "--namesrv-port", "0"],
                  tmp_path)  # fmt: skip
    out = proc.communicate(timeout=20)[0]
    assert proc.returncode == 1, out
    assert "Error: the message store failed: " in out and "is 100 bytes" in out, out
    assert "Traceback" not in out, out


async def test_broker_registers_with_every_namesrv(tmp_path: Path) -> None:
    async with (
        NameServer(NameServerSettings(host="127.0.0.1", listen_port=0)) as ns1,
        NameServer(NameServerSettings(host="127.0.0.1", listen_port=0)) as ns2,
    ):
        addrs = f"127.0.0.1:{ns1.port};127.0.0.1:{ns2.port}"
        async with Broker(broker_settings(tmp_path, addrs)) as b:
            for ns in (ns1, ns2):
                await check_for(lambda ns=ns: b.addr in str(ns.routes.cluster_info().to_json()))
