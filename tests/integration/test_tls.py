"""A NameServer and a broker that accept TLS only, with certificates from a CA: the broker
registers over TLS, TLS clients produce and consume, plain clients are turned away; and
`rmqkit serve` reads RocketMQ's `tls.*` keys."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rmqkit.client.admin import AdminClient
from rmqkit.client.message import Message, SendStatus
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.errors import RmqkitError
from rmqkit.protocol.record import StoredMessage
from rmqkit.remoting.tls import ClientTls, ServerTls, TlsMode
from rmqkit.remoting.tls_config import TlsSettings
from rmqkit.server.broker.broker import Broker
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.testing import check_for
from tests.certs import Issued, TestCA

from .conftest import broker_settings

pytestmark = pytest.mark.integration


@dataclass
class TlsCluster:
    namesrv: NameServer
    broker: Broker
    ca: TestCA
    client: ClientTls

    @property
    def ns(self) -> str:
        return f"127.0.0.1:{self.namesrv.port}"


def enforcing(cert: Issued) -> ServerTls:
    return ServerTls(TlsMode.ENFORCING, cert.cert, cert.key)


@pytest.fixture
async def tls_cluster(tmp_path: Path) -> AsyncIterator[TlsCluster]:
    ca = TestCA(tmp_path / "ca")
    verify = ClientTls(verify=True, trust_cert_path=ca.cert, check_hostname=True)
    ns_tls = enforcing(ca.issue("namesrv"))
    async with NameServer(NameServerSettings(host="127.0.0.1", listen_port=0), tls=ns_tls) as ns:
        settings = broker_settings(tmp_path / "store", f"127.0.0.1:{ns.port}")
        broker = Broker(settings, tls=TlsSettings(enforcing(ca.issue("broker")), verify))
        await broker.start()  # its first registration went over TLS, verified by the CA
        try:
            yield TlsCluster(ns, broker, ca, verify)
        finally:
            await broker.stop()


async def test_tls_clients_produce_and_consume_through_an_enforcing_cluster(
    tls_cluster: TlsCluster,
) -> None:
    c = tls_cluster
    assert c.namesrv.routes.cluster_info().broker_addr_table  # registered over TLS
    async with AdminClient(c.ns, tls=c.client) as admin:
        await admin.create_topic("tls-orders", 2)
    async with Producer("tls-producers", c.ns, tls=c.client) as producer:
        for i in range(20):
            result = await producer.send(Message("tls-orders", f"order-{i}".encode() * 200))
            assert result.status is SendStatus.SEND_OK
    got: list[bytes] = []

    async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        got.extend(m.body for m in msgs)
        return ConsumeResult.SUCCESS

    consumer = PushConsumer(
        "tls-consumers", c.ns, tls=c.client, consume_from_where="CONSUME_FROM_FIRST_OFFSET",
        rebalance_interval_ms=500,
    )  # fmt: skip
    consumer.subscribe("tls-orders")
    consumer.register(handle)
    async with consumer:
        await check_for(lambda: len(got) == 20, timeout=10)
        conns = c.broker.server.connections
        assert conns and all(
            conn.transport and conn.transport.get_extra_info("cipher") for conn in conns
        ), "every connection to the broker is a TLS connection"
    assert sorted(got) == sorted(f"order-{i}".encode() * 200 for i in range(20))


async def test_a_plain_client_is_turned_away_by_an_enforcing_cluster(
    tls_cluster: TlsCluster,
) -> None:
    async with Producer(
        "plain-producers", tls_cluster.ns, retry_times_when_send_failed=0
    ) as producer:
        with pytest.raises(RmqkitError, match=r"accepts TLS connections only"):
            await asyncio.wait_for(producer.send(Message("tls-orders", b"x")), 10)


async def test_a_client_that_does_not_trust_the_ca_cannot_connect(
    tls_cluster: TlsCluster, tmp_path: Path
) -> None:
    stranger = ClientTls(verify=True, trust_cert_path=TestCA(tmp_path / "other").cert)
    async with Producer(
        "wary-producers", tls_cluster.ns, tls=stranger, retry_times_when_send_failed=0
    ) as producer:
        with pytest.raises(RmqkitError, match=r"TLS: .*CERTIFICATE_VERIFY_FAILED"):
            await asyncio.wait_for(producer.send(Message("tls-orders", b"x")), 10)


def _serve(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rmqkit.cli.main", "serve", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "RMQKIT_LISTEN_HOST": "127.0.0.1", **env},
    )  # fmt: skip


async def test_serve_reads_tls_keys_from_broker_properties_and_the_environment(
    tmp_path: Path,
) -> None:
    ca = TestCA(tmp_path / "ca")
    cert = ca.issue("broker")
    (tmp_path / "tls.properties").write_text(
        f"tls.test.mode.enable=false\ntls.server.certPath={cert.cert}\n"
        f"tls.server.keyPath={cert.key}\n"
    )
    ns_cert = ca.issue("namesrv")
    ns_tls = ServerTls(cert_path=ns_cert.cert, key_path=ns_cert.key)  # permissive
    async with NameServer(NameServerSettings(host="127.0.0.1", listen_port=0), tls=ns_tls) as ns:
        conf = tmp_path / "broker-a.properties"
        conf.write_text(
            f"brokerName=broker-tls\nnamesrvAddr=127.0.0.1:{ns.port}\nlistenPort=0\n"
            "storePathRootDir=store\nmappedFileSizeCommitLog=1048576\nmaxMessageSize=65536\n"
            "tls.config.file=tls.properties\ntls.server.mode=permissive\n"
        )
        proc = _serve(["--config", str(conf)], tmp_path, {"RMQKIT_TLS_SERVER_MODE": "enforcing"})
        try:
            assert proc.stdout is not None
            lines: list[str] = []
            while not lines or ": TLS " not in lines[-1]:
                line = proc.stdout.readline()
                assert line, lines
                lines.append(line)
            assert any(re.search(r"listening on 127\.0\.0\.1:\d+", line) for line in lines)
            assert f"TLS enforcing: TLS only, showing {cert.cert}" in lines[-1], lines
            verify = ClientTls(verify=True, trust_cert_path=ca.cert)
            async with Producer("p", f"127.0.0.1:{ns.port}", tls=verify) as producer:
                await check_for(lambda: ns.routes.cluster_info().broker_addr_table, timeout=5)
                result = await producer.send(Message("TBW102-auto", b"over tls"))
                assert result.status is SendStatus.SEND_OK
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=20)[0]
            assert proc.returncode == 0 and "stopped cleanly" in out, out
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=20)


def test_serve_stops_on_a_bad_tls_value_naming_the_key(tmp_path: Path) -> None:
    conf = tmp_path / "broker.properties"
    conf.write_text("listenPort=0\ntls.server.mode=strict\n")
    proc = _serve(["--config", str(conf)], tmp_path, {})
    out = proc.communicate(timeout=20)[0]
    assert proc.returncode != 0
    assert "tls.server.mode='strict'" in out and "enforcing" in out, out
