"""JSON bodies of the NameServer: topic routes, cluster info, topic lists, KV tables, registrations.

RocketMQ's `TopicRouteData` (`QueueData`, `BrokerData`), `ClusterInfo`, `TopicList`, `KVTable`,
`DataVersion` and `RegisterBrokerBody`. rmqkit writes standard JSON and reads fastjson's too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import orjson

from rmqkit.common.java_values import json_bool, json_int
from rmqkit.common.topic import PERM_RW, DataVersion, TopicConfig
from rmqkit.common.types import BrokerAddr, BrokerName, TopicName

ClusterName: TypeAlias = str
BrokerId: TypeAlias = int
"""0 is the master of a broker name; slaves have ids above 0."""

MASTER_ID: BrokerId = 0
NAMESPACE_ORDER_TOPIC_CONFIG = "ORDER_TOPIC_CONFIG"
"""KV namespace whose values (`"brokerName:queueNums;..."`) mark topics as ordered."""


class BodyError(ValueError):
    """A JSON body that is not what its request code needs; the remark says what is wrong."""


# fastjson writes `HashMap<Long, String>` keys bare: `{0:"10.0.0.1:10911"}`. The pattern matches a
# whole string token (left as it is, so digits inside strings never change) or a bare integer
# key after `{` or `,` (quoted). A number followed by `:` can only be a key.
_STRING_OR_BARE_KEY = re.compile(r'("(?:[^"\\]|\\.)*")|([{,]\s*)(-?\d+)(\s*:)', re.DOTALL)


def _quote_bare_key(m: re.Match[str]) -> str:
    if m.group(1) is not None:
        return m.group(1)
    return f'{m.group(2)}"{m.group(3)}"{m.group(4)}'


def loads_lenient(body: bytes | memoryview | str, what: str) -> Any:
    """Parse JSON, accepting fastjson's bare integer keys; `BodyError` names `what` on failure."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as first:
        try:
            text = body if isinstance(body, str) else bytes(body).decode("utf-8")
            return orjson.loads(_STRING_OR_BARE_KEY.sub(_quote_bare_key, text))
        except (UnicodeDecodeError, orjson.JSONDecodeError):
            raise BodyError(f"{what} body is not valid JSON: {first}") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BodyError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def _member(d: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    """An object member that may be absent or null (an empty object then)."""
    value = d.get(key)
    return {} if value is None else _object(value, what)


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BodyError(f"{what} must be a JSON array, not {type(value).__name__}")
    return value


def _int(d: dict[str, Any], key: str, default: int, what: str) -> int:
    value = d.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BodyError(f"{what}.{key} must be an integer, not {value!r}")
    n = json_int(value)
    if n is None:
        raise BodyError(f"{what}.{key} must be an integer (a Java long), not {value!r:.40}")
    return n


def _bool(d: dict[str, Any], key: str, what: str) -> bool:
    value = json_bool(d.get(key))
    if value is None:
        raise BodyError(f"{what}.{key} must be a boolean, not {d.get(key)!r:.60}")
    return value


def _str(d: dict[str, Any], key: str, what: str) -> str:
    value = d.get(key)
    if not isinstance(value, str):
        raise BodyError(f"{what}.{key} must be a string, not {value!r}")
    return value


@dataclass(slots=True)
class QueueData:
    """The queues one broker name gives a topic."""

    broker_name: BrokerName
    read_queue_nums: int = 8
    write_queue_nums: int = 8
    perm: int = PERM_RW
    topic_sys_flag: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "brokerName": self.broker_name,
            "perm": self.perm,
            "readQueueNums": self.read_queue_nums,
            "topicSysFlag": self.topic_sys_flag,
            "writeQueueNums": self.write_queue_nums,
        }

    @classmethod
    def from_json(cls, value: Any) -> QueueData:
        d = _object(value, "queueData")
        # Servers before 4.x spelled the flag `topicSynFlag`.
        flag_key = "topicSysFlag" if "topicSysFlag" in d else "topicSynFlag"
        return cls(
            broker_name=_str(d, "brokerName", "queueData"),
            read_queue_nums=_int(d, "readQueueNums", 0, "queueData"),
            write_queue_nums=_int(d, "writeQueueNums", 0, "queueData"),
            perm=_int(d, "perm", 0, "queueData"),
            topic_sys_flag=_int(d, flag_key, 0, "queueData"),
        )


@dataclass(slots=True)
class BrokerData:
    """One broker name: its cluster and the address of each member by broker id."""

    cluster: ClusterName
    broker_name: BrokerName
    broker_addrs: dict[BrokerId, BrokerAddr] = field(default_factory=dict)
    zone_name: str | None = None
    enable_acting_master: bool = False

    @property
    def master_addr(self) -> BrokerAddr | None:
        return self.broker_addrs.get(MASTER_ID)

    def copy(self) -> BrokerData:
        return BrokerData(
            self.cluster,
            self.broker_name,
            dict(self.broker_addrs),
            self.zone_name,
            self.enable_acting_master,
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            # String keys, sorted by id: what Java sends to clients of version >= V4_9_4.
            "brokerAddrs": {str(k): self.broker_addrs[k] for k in sorted(self.broker_addrs)},
            "brokerName": self.broker_name,
            "cluster": self.cluster,
            "enableActingMaster": self.enable_acting_master,
        }
        if self.zone_name is not None:
            d["zoneName"] = self.zone_name
        return d

    @classmethod
    def from_json(cls, value: Any) -> BrokerData:
        d = _object(value, "brokerData")
        addrs: dict[BrokerId, BrokerAddr] = {}
        for k, v in _member(d, "brokerAddrs", "brokerData.brokerAddrs").items():
            try:
                addrs[int(k)] = str(v)
            except ValueError:
                raise BodyError(f"brokerData.brokerAddrs key {k!r} is not a broker id") from None
        zone = d.get("zoneName")
        return cls(
            cluster=_str(d, "cluster", "brokerData"),
            broker_name=_str(d, "brokerName", "brokerData"),
            broker_addrs=addrs,
            zone_name=None if zone is None else str(zone),
            enable_acting_master=_bool(d, "enableActingMaster", "brokerData"),
        )


@dataclass(slots=True)
class TopicRouteData:
    """GET_ROUTEINFO_BY_TOPIC's answer: which brokers carry a topic, with how many queues."""

    queue_datas: list[QueueData] = field(default_factory=list)
    broker_datas: list[BrokerData] = field(default_factory=list)
    order_topic_conf: str | None = None
    filter_server_table: dict[BrokerAddr, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "brokerDatas": [b.to_json() for b in self.broker_datas],
            "filterServerTable": {k: list(v) for k, v in self.filter_server_table.items()},
        }
        if self.order_topic_conf is not None:
            d["orderTopicConf"] = self.order_topic_conf
        d["queueDatas"] = [q.to_json() for q in self.queue_datas]
        return d

    @classmethod
    def from_json(cls, value: Any) -> TopicRouteData:
        d = _object(value, "topicRouteData")
        filters = _member(d, "filterServerTable", "topicRouteData.filterServerTable")
        conf = d.get("orderTopicConf")
        return cls(
            queue_datas=[QueueData.from_json(q) for q in _list(d.get("queueDatas"), "queueDatas")],
            broker_datas=[
                BrokerData.from_json(b) for b in _list(d.get("brokerDatas"), "brokerDatas")
            ],
            order_topic_conf=None if conf is None else str(conf),
            filter_server_table={
                str(k): [str(s) for s in _list(v, "filterServerTable entry")]
                for k, v in filters.items()
            },
        )


def encode_topic_route(route: TopicRouteData) -> bytes:
    return orjson.dumps(route.to_json())


def decode_topic_route(body: bytes | memoryview | str) -> TopicRouteData:
    """Standard JSON or fastjson's `{0:"..."}` form."""
    return TopicRouteData.from_json(loads_lenient(body, "TopicRouteData"))


@dataclass(slots=True)
class ClusterInfo:
    """GET_BROKER_CLUSTER_INFO's answer: every broker name, and the broker names of each cluster."""

    broker_addr_table: dict[BrokerName, BrokerData] = field(default_factory=dict)
    cluster_addr_table: dict[ClusterName, set[BrokerName]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "brokerAddrTable": {k: v.to_json() for k, v in self.broker_addr_table.items()},
            "clusterAddrTable": {k: sorted(v) for k, v in self.cluster_addr_table.items()},
        }

    @classmethod
    def from_json(cls, value: Any) -> ClusterInfo:
        d = _object(value, "clusterInfo")
        brokers = _member(d, "brokerAddrTable", "clusterInfo.brokerAddrTable")
        clusters = _member(d, "clusterAddrTable", "clusterInfo.clusterAddrTable")
        return cls(
            broker_addr_table={str(k): BrokerData.from_json(v) for k, v in brokers.items()},
            cluster_addr_table={
                str(k): {str(n) for n in _list(v, "clusterAddrTable entry")}
                for k, v in clusters.items()
            },
        )


def encode_cluster_info(info: ClusterInfo) -> bytes:
    return orjson.dumps(info.to_json())


def decode_cluster_info(body: bytes | memoryview | str) -> ClusterInfo:
    """Standard JSON or fastjson's form (which a Java NameServer always sends here)."""
    return ClusterInfo.from_json(loads_lenient(body, "ClusterInfo"))


@dataclass(slots=True)
class TopicList:
    """`{"topicList":[...]}`; `brokerAddr` is present only when set (fastjson omits nulls)."""

    topics: list[TopicName] = field(default_factory=list)
    broker_addr: BrokerAddr | None = None


def encode_topic_list(topics: list[TopicName], broker_addr: BrokerAddr | None = None) -> bytes:
    d: dict[str, Any] = {"topicList": list(topics)}
    if broker_addr is not None:
        d["brokerAddr"] = broker_addr
    return orjson.dumps(d)


def decode_topic_list(body: bytes | memoryview | str) -> TopicList:
    d = _object(loads_lenient(body, "TopicList"), "topicList body")
    addr = d.get("brokerAddr")
    return TopicList(
        topics=[str(t) for t in _list(d.get("topicList"), "topicList")],
        broker_addr=None if addr is None else str(addr),
    )


def encode_kv_table(table: dict[str, str]) -> bytes:
    return orjson.dumps({"table": table})


def decode_kv_table(body: bytes | memoryview | str) -> dict[str, str]:
    d = _object(loads_lenient(body, "KVTable"), "KVTable body")
    table = _member(d, "table", "KVTable.table")
    return {str(k): str(v) for k, v in table.items()}


def encode_data_version(version: DataVersion) -> bytes:
    return orjson.dumps(version.to_json())


def _data_version(value: Any) -> DataVersion:
    d = _object(value, "dataVersion")
    return DataVersion(
        state_version=_int(d, "stateVersion", 0, "dataVersion"),
        timestamp=_int(d, "timestamp", 0, "dataVersion"),
        counter=_int(d, "counter", 0, "dataVersion"),
    )


def decode_data_version(body: bytes | memoryview | str) -> DataVersion:
    return _data_version(loads_lenient(body, "DataVersion"))


def encode_register_broker_body(
    topic_configs: dict[TopicName, TopicConfig], data_version: DataVersion
) -> bytes:
    """The uncompressed RegisterBrokerBody a broker sends with REGISTER_BROKER."""
    return orjson.dumps(
        {
            "topicConfigSerializeWrapper": {
                "topicConfigTable": {name: tc.to_json() for name, tc in topic_configs.items()},
                "dataVersion": data_version.to_json(),
            },
            "filterServerList": [],
        }
    )


def decode_register_broker_body(
    body: bytes | memoryview | str,
) -> tuple[dict[TopicName, TopicConfig], DataVersion]:
    """Topic configs and data version of an uncompressed RegisterBrokerBody.

    An empty body means no topics and data version zero, as Java reads a missing body.
    """
    if len(body) == 0:
        return {}, DataVersion(0, 0, 0)
    d = _object(loads_lenient(body, "RegisterBrokerBody"), "RegisterBrokerBody")
    wrapper = _member(d, "topicConfigSerializeWrapper", "topicConfigSerializeWrapper")
    table = _member(wrapper, "topicConfigTable", "topicConfigTable")
    configs: dict[TopicName, TopicConfig] = {}
    for name, raw in table.items():
        tc = dict(_object(raw, f"topicConfigTable[{name!r}]"))
        tc.setdefault("topicName", name)
        try:
            configs[str(name)] = TopicConfig.from_json(tc)
        except (TypeError, ValueError, AttributeError) as exc:
            raise BodyError(f"topicConfigTable[{name!r}] is malformed: {exc}") from None
    raw_version = wrapper.get("dataVersion")
    return configs, DataVersion(0, 0, 0) if raw_version is None else _data_version(raw_version)
