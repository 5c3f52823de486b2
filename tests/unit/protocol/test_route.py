"""The NameServer's JSON bodies: standard output, fastjson input, round trips, malformed input."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmqkit.common.topic import DataVersion, TopicConfig
from rmqkit.protocol.route import (
    BodyError,
    BrokerData,
    ClusterInfo,
    QueueData,
    TopicRouteData,
    decode_cluster_info,
    decode_data_version,
    decode_kv_table,
    decode_register_broker_body,
    decode_topic_list,
    decode_topic_route,
    encode_cluster_info,
    encode_data_version,
    encode_kv_table,
    encode_register_broker_body,
    encode_topic_list,
    encode_topic_route,
)

_INT_KEY = re.compile(r"-?\d+")


def fastjson(value: Any) -> str:
    """What plain fastjson writes: like JSON, but integer-looking map keys go out unquoted."""
    if isinstance(value, dict):
        items = (
            (k if _INT_KEY.fullmatch(k) else orjson.dumps(k).decode()) + ":" + fastjson(v)
            for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(fastjson(v) for v in value) + "]"
    return orjson.dumps(value).decode()


def sample_route() -> TopicRouteData:
    return TopicRouteData(
        queue_datas=[QueueData("broker-a", 4, 4, 6, 0)],
        broker_datas=[
            BrokerData("DefaultCluster", "broker-a", {0: "127.0.0.1:10911", 1: "127.0.0.1:10921"})
        ],
    )


def test_route_is_standard_json_with_string_keys() -> None:
    body = encode_topic_route(sample_route())
    assert b'"brokerAddrs":{"0":"127.0.0.1:10911","1":"127.0.0.1:10921"}' in body
    d = orjson.loads(body)
    assert d["queueDatas"] == [
        {
            "brokerName": "broker-a",
            "perm": 6,
            "readQueueNums": 4,
            "topicSysFlag": 0,
            "writeQueueNums": 4,
        }
    ]
    assert d["filterServerTable"] == {}
    assert "orderTopicConf" not in d
    assert d["brokerDatas"][0]["enableActingMaster"] is False
    assert "zoneName" not in d["brokerDatas"][0]


def test_route_decodes_fastjson_bare_int_keys() -> None:
    raw = (
        b'{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911", 1 :"127.0.0.1:10921"},'
        b'"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],'
        b'"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,'
        b'"readQueueNums":4,"topicSynFlag":0,"writeQueueNums":4}]}'
    )
    assert decode_topic_route(raw) == sample_route()


def test_bare_key_pass_leaves_strings_alone() -> None:
    route = TopicRouteData(
        queue_datas=[QueueData('we{0:"ird', 1, 1)],
        broker_datas=[BrokerData('c,1:"x', 'we{0:"ird', {0: '{0:"a"}', 7: "b"})],
        order_topic_conf='we{0:"ird:1',
    )
    assert decode_topic_route(fastjson(route.to_json())) == route


def test_cluster_info_round_trip_both_forms() -> None:
    info = ClusterInfo(
        broker_addr_table={
            "broker-a": BrokerData("c1", "broker-a", {0: "h:1"}, zone_name="z1"),
            "broker-b": BrokerData("c1", "broker-b", {0: "h:2", 2: "h:3"}),
        },
        cluster_addr_table={"c1": {"broker-a", "broker-b"}},
    )
    body = encode_cluster_info(info)
    assert orjson.loads(body)["clusterAddrTable"] == {"c1": ["broker-a", "broker-b"]}
    assert decode_cluster_info(body) == info
    assert decode_cluster_info(fastjson(orjson.loads(body))) == info


def test_topic_list_kv_table_and_data_version() -> None:
    assert orjson.loads(encode_topic_list(["a", "b"])) == {"topicList": ["a", "b"]}
    listed = decode_topic_list(encode_topic_list(["a"], broker_addr="h:1"))
    assert (listed.topics, listed.broker_addr) == (["a"], "h:1")
    assert encode_kv_table({}) == b'{"table":{}}'
    assert decode_kv_table(encode_kv_table({"T": "broker-a:4"})) == {"T": "broker-a:4"}
    version = DataVersion(state_version=2, timestamp=1700000000000, counter=5)
    assert decode_data_version(encode_data_version(version)) == version


def test_register_broker_body_round_trip() -> None:
    configs = {
        "T": TopicConfig("T", 4, 4, 6),
        "%RETRY%g": TopicConfig("%RETRY%g", 1, 1, 6, attributes={"+message.type": "NORMAL"}),
    }
    version = DataVersion(0, 1700000000000, 3)
    body = encode_register_broker_body(configs, version)
    d = orjson.loads(body)
    assert d["filterServerList"] == []
    assert d["topicConfigSerializeWrapper"]["dataVersion"] == version.to_json()
    assert d["topicConfigSerializeWrapper"]["topicConfigTable"]["T"]["topicFilterType"] == (
        "SINGLE_TAG"
    )
    assert decode_register_broker_body(body) == (configs, version)


def test_register_broker_body_java_extras_and_empty_body() -> None:
    java = (
        b'{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":2,'
        b'"stateVersion":0,"timestamp":17},"topicConfigTable":{"T":{"order":false,"perm":6,'
        b'"readQueueNums":8,"topicFilterType":"SINGLE_TAG","topicSysFlag":0,'
        b'"writeQueueNums":8}},"topicQueueMappingInfoMap":{},"mappingDataVersion":{}}}'
    )
    configs, version = decode_register_broker_body(java)
    assert configs == {"T": TopicConfig("T", 8, 8, 6)}
    assert version == DataVersion(0, 17, 2)
    assert decode_register_broker_body(b"") == ({}, DataVersion(0, 0, 0))


@pytest.mark.parametrize(
    ("decode", "body", "needle"),
    [
        (decode_topic_route, b"not json", "not valid JSON"),
        (decode_topic_route, b"[]", "must be a JSON object"),
        (decode_topic_route, b'{"queueDatas":{}}', "queueDatas"),
        (decode_topic_route, b'{"brokerDatas":[{"brokerAddrs":{"x":"a"}}]}', "broker id"),
        (decode_topic_route, b'{"queueDatas":[{"brokerName":"b","perm":"rw"}]}', "perm"),
        (decode_register_broker_body, b"\xff\xfe", "not valid JSON"),
        (decode_register_broker_body, b'{"topicConfigSerializeWrapper":[]}', "object"),
        (
            decode_register_broker_body,
            b'{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{"perm":"x"}}}}',
            "topicConfigTable['T']",
        ),
        (decode_data_version, b'{"counter":"many"}', "counter"),
    ],
)
def test_malformed_bodies_raise_body_error(decode: Any, body: bytes, needle: str) -> None:
    with pytest.raises(BodyError, match=re.escape(needle)):
        decode(body)


_text = st.text(st.characters(codec="utf-8"), max_size=12)
_int32 = st.integers(-(2**31), 2**31 - 1)
_queue = st.builds(QueueData, _text, _int32, _int32, _int32, _int32)
_broker = st.builds(
    BrokerData,
    _text,
    _text,
    st.dictionaries(st.integers(0, 2**63 - 1), _text, max_size=4),
    st.none() | _text,
    st.booleans(),
)
_route = st.builds(
    TopicRouteData,
    st.lists(_queue, max_size=4),
    st.lists(_broker, max_size=4),
    st.none() | _text,
    st.dictionaries(_text, st.lists(_text, max_size=2), max_size=2),
)


@given(_route)
def test_route_round_trip(route: TopicRouteData) -> None:
    body = encode_topic_route(route)
    assert decode_topic_route(body) == route
    assert decode_topic_route(fastjson(orjson.loads(body))) == route
