"""Request builders shared by the NameServer wire tests (what a broker or client would send)."""

from __future__ import annotations

from rmqkit.common.topic import DataVersion, TopicConfig
from rmqkit.protocol.codes import RequestCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.route import encode_register_broker_body

MASTER = "127.0.0.1:10911"
SLAVE = "127.0.0.1:10921"


def register_request(
    addr: str = MASTER,
    broker_id: int = 0,
    topics: dict[str, int] | None = None,
    version: DataVersion | None = None,
    *,
    broker_name: str = "broker-a",
    cluster: str = "DefaultCluster",
    **extra: str,
) -> RemotingCommand:
    configs = {t: TopicConfig(t, n, n) for t, n in (topics or {"T": 4}).items()}
    host, port = addr.rsplit(":", 1)
    ext = {
        "brokerName": broker_name,
        "brokerAddr": addr,
        "clusterName": cluster,
        "haServerAddr": f"{host}:{int(port) + 1}",
        "brokerId": str(broker_id),
        "compressed": "false",
        **extra,
    }
    body = encode_register_broker_body(configs, version or DataVersion(0, 1, 1))
    return RemotingCommand(RequestCode.REGISTER_BROKER, ext_fields=ext, body=body)


def request(code: RequestCode, body: bytes = b"", /, **ext: str) -> RemotingCommand:
    return RemotingCommand(code, ext_fields=ext, body=body)


def route_request(topic: str) -> RemotingCommand:
    return request(RequestCode.GET_ROUTEINFO_BY_TOPIC, topic=topic)
