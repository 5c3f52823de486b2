"""Every request header field, one at a time, set to what no client should send.

Each request starts from one that succeeds; one field is then dropped or given a bad value, or
the body is cut short, garbled, or has a JSON value of another type at any depth. The
broker and the NameServer must answer every one with a code and a remark of their own: no
Python exception text in the remark, no traceback in the log, no request left unanswered.
Afterwards both still serve, and a broker stop persists what the requests left behind (a
consumer offset past Java's `long` once made every later persist fail).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import orjson
import pytest

from rmqkit.common.properties import Prop, encode_properties, reply_topic
from rmqkit.protocol.batch import BatchEntry, encode_batch
from rmqkit.protocol.codes import RequestCode as RC
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.heartbeat import ConsumerEntry, HeartbeatData, SubscriptionEntry
from rmqkit.protocol.message_id import decode_offset_msg_id
from rmqkit.remoting.client import RemotingClient

from .conftest import Cluster, running_cluster

pytestmark = pytest.mark.integration

BAD_VALUES = [
    "",
    "junk",
    "-1",
    "1.5",
    "2147483648",  # one past Java's int
    "-9223372036854775809",  # one past Java's long
    "99999999999999999999999",
    "1e300",
    "x" * 5000,
    "\u00fc\u0000\u2028",
]
PYTHON_ERRORS = ("Error:", "error:", "Exception", "Traceback")

_NOW = str(int(time.time() * 1000))
_V2 = {
    "a": "PG", "b": "T", "c": "TBW102", "d": "4", "e": "0", "f": "0", "g": _NOW, "h": "0",
    "i": "KEYS\u0001k1\u0002", "j": "0", "k": "false", "l": "16", "m": "false", "n": "broker-a",
}  # fmt: skip
_V1 = {
    "producerGroup": "PG", "topic": "T", "defaultTopic": "TBW102", "defaultTopicQueueNums": "4",
    "queueId": "0", "sysFlag": "0", "bornTimestamp": _NOW, "flag": "0", "properties": "",
    "reconsumeTimes": "0", "unitMode": "false", "maxReconsumeTimes": "16", "batch": "false",
}  # fmt: skip
_PULL = {
    "consumerGroup": "CG", "topic": "T", "queueId": "0", "queueOffset": "0", "maxMsgNums": "32",
    "sysFlag": "5", "commitOffset": "0", "suspendTimeoutMillis": "0", "subscription": "*",
    "subVersion": "0", "expressionType": "TAG",
}  # fmt: skip
REQUESTER = "10.0.0.2@requester"
_QUEUE = {"topic": "T", "queueId": "0"}
_OFFSET = {"consumerGroup": "CG", "topic": "T", "queueId": "0"}

# (server, code, fields, body): requests that succeed as they are (checked below).
Template = tuple[str, int, dict[str, str], bytes]


def _replies() -> tuple[dict[str, str], dict[str, str]]:
    """SEND_REPLY_MESSAGE's V1 and V2 fields: a reply to `REQUESTER`, which takes its pushes."""
    props = encode_properties({
        Prop.MESSAGE_TYPE: "reply", Prop.CORRELATION_ID: "c-1",
        Prop.MESSAGE_REPLY_TO_CLIENT: REQUESTER, Prop.MESSAGE_TTL: "3000",
    })  # fmt: skip
    topic = reply_topic("DefaultCluster")
    return _V1 | {"topic": topic, "properties": props}, _V2 | {"b": topic, "i": props}


def _templates(c: Cluster, phys: int, msg_id: str, end_tx: dict[str, str]) -> list[Template]:
    heartbeat = HeartbeatData(
        "10.0.0.1@1", ["PG"], [ConsumerEntry("CG", subscriptions=[SubscriptionEntry("T", "*")])]
    ).encode()
    lock = orjson.dumps({
        "consumerGroup": "CG", "clientId": "10.0.0.1@1",
        "mqSet": [{"topic": "T", "brokerName": c.broker.settings.broker_name, "queueId": 0}],
    })  # fmt: skip
    group = orjson.dumps({
        "groupName": "CG2", "consumeEnable": True, "consumeFromMinEnable": True,
        "consumeBroadcastEnable": True, "retryQueueNums": 1, "retryMaxTimes": 16,
        "brokerId": 0, "whichBrokerWhenConsumeSlowly": 1, "notifyConsumerIdsChangedEnable": True,
    })  # fmt: skip
    fake = {"brokerName": "fake", "brokerAddr": "127.0.0.1:1", "clusterName": "FakeCluster",
            "haServerAddr": "127.0.0.1:2", "brokerId": "0", "compressed": "false"}  # fmt: skip
    version = orjson.dumps({"timestamp": 1, "counter": 1, "stateVersion": 0})
    register = orjson.dumps({
        "topicConfigSerializeWrapper": {
            "topicConfigTable": {"T8": {"topicName": "T8", "readQueueNums": 2,
                                        "writeQueueNums": 2, "perm": 6}},
            "dataVersion": {"timestamp": 1, "counter": 1, "stateVersion": 0},
        },
        "filterServerList": [],
    })  # fmt: skip
    route = orjson.dumps({
        "queueDatas": [{"brokerName": "fake", "readQueueNums": 2, "writeQueueNums": 2,
                        "perm": 6, "topicSysFlag": 0}],
        "brokerDatas": [],
    })  # fmt: skip
    batch = encode_batch([BatchEntry(b"b1", ""), BatchEntry(b"b2", "")])
    reply_v1, reply_v2 = _replies()
    return [
        ("broker", RC.SEND_MESSAGE_V2, _V2, b"body"),
        ("broker", RC.SEND_REPLY_MESSAGE, reply_v1, b"reply"),
        ("broker", RC.SEND_REPLY_MESSAGE_V2, reply_v2, b"reply"),
        ("broker", RC.SEND_MESSAGE, _V1, b"body"),
        ("broker", RC.SEND_BATCH_MESSAGE, _V2, batch),
        ("broker", RC.PULL_MESSAGE, _PULL, b""),
        ("broker", RC.LITE_PULL_MESSAGE, _PULL, b""),
        ("broker", RC.QUERY_CONSUMER_OFFSET, _OFFSET, b""),
        ("broker", RC.UPDATE_CONSUMER_OFFSET, _OFFSET | {"commitOffset": "1"}, b""),
        ("broker", RC.GET_MAX_OFFSET, _QUEUE, b""),
        ("broker", RC.GET_MIN_OFFSET, _QUEUE, b""),
        ("broker", RC.SEARCH_OFFSET_BY_TIMESTAMP, _QUEUE | {"timestamp": _NOW}, b""),
        ("broker", RC.GET_EARLIEST_MSG_STORETIME, _QUEUE, b""),
        ("broker", RC.VIEW_MESSAGE_BY_ID, {"offset": str(phys)}, b""),
        ("broker", RC.QUERY_MESSAGE, {"topic": "T", "key": "k1", "maxNum": "32",
                                      "beginTimestamp": "0", "endTimestamp": str(2**62)}, b""),
        ("broker", RC.CONSUMER_SEND_MSG_BACK, {"offset": str(phys), "group": "CG",
                                               "delayLevel": "0", "originMsgId": msg_id,
                                               "originTopic": "T", "maxReconsumeTimes": "16"}, b""),
        ("broker", RC.END_TRANSACTION, end_tx, b""),
        ("broker", RC.HEART_BEAT, {}, heartbeat),
        ("broker", RC.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": "CG"}, b""),
        ("broker", RC.LOCK_BATCH_MQ, {}, lock),
        ("broker", RC.UNLOCK_BATCH_MQ, {}, lock),
        ("broker", RC.UPDATE_AND_CREATE_TOPIC, {"topic": "T2", "defaultTopic": "TBW102",
                                                "readQueueNums": "2", "writeQueueNums": "2",
                                                "perm": "6", "topicFilterType": "SINGLE_TAG",
                                                "topicSysFlag": "0", "order": "false"}, b""),
        ("broker", RC.GET_CONSUME_STATS, {"consumerGroup": "CG", "topic": "T"}, b""),
        ("broker", RC.GET_TOPIC_STATS_INFO, {"topic": "T"}, b""),
        ("broker", RC.QUERY_TOPIC_CONSUME_BY_WHO, {"topic": "T"}, b""),
        ("broker", RC.GET_CONSUMER_CONNECTION_LIST, {"consumerGroup": "CG"}, b""),
        ("broker", RC.GET_PRODUCER_CONNECTION_LIST, {"producerGroup": "PG"}, b""),
        ("broker", RC.INVOKE_BROKER_TO_RESET_OFFSET, {"topic": "T", "group": "CG",
                                                      "timestamp": _NOW, "isForce": "true"}, b""),
        ("broker", RC.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, {}, group),
        ("broker", RC.GET_ALL_SUBSCRIPTIONGROUP_CONFIG, {}, b""),
        ("broker", RC.GET_ALL_TOPIC_CONFIG, {}, b""),
        ("broker", RC.GET_ALL_CONSUMER_OFFSET, {}, b""),
        ("broker", RC.GET_BROKER_RUNTIME_INFO, {}, b""),
        ("broker", RC.TRIGGER_DELETE_FILES, {}, b""),
        ("broker", RC.DELETE_SUBSCRIPTIONGROUP, {"groupName": "CG2"}, b""),
        ("broker", RC.DELETE_TOPIC_IN_BROKER, {"topic": "T2"}, b""),
        ("broker", RC.UNREGISTER_CLIENT, {"clientID": "10.0.0.1@1", "producerGroup": "PG",
                                          "consumerGroup": "CG"}, b""),
        ("namesrv", RC.REGISTER_BROKER, fake, register),
        ("namesrv", RC.BROKER_HEARTBEAT, fake, b""),
        ("namesrv", RC.QUERY_DATA_VERSION, fake, version),
        ("namesrv", RC.REGISTER_TOPIC_IN_NAMESRV, {"topic": "T9"}, route),
        ("namesrv", RC.GET_TOPICS_BY_CLUSTER, {"cluster": "FakeCluster"}, b""),
        ("namesrv", RC.GET_ROUTEINFO_BY_TOPIC, {"topic": "T"}, b""),
        ("namesrv", RC.GET_BROKER_CLUSTER_INFO, {}, b""),
        ("namesrv", RC.GET_ALL_TOPIC_LIST_FROM_NAMESERVER, {}, b""),
        ("namesrv", RC.PUT_KV_CONFIG, {"namespace": "NS", "key": "k", "value": "v"}, b""),
        ("namesrv", RC.GET_KV_CONFIG, {"namespace": "NS", "key": "k"}, b""),
        ("namesrv", RC.GET_KVLIST_BY_NAMESPACE, {"namespace": "NS"}, b""),
        ("namesrv", RC.DELETE_KV_CONFIG, {"namespace": "NS", "key": "k"}, b""),
        ("namesrv", RC.GET_ALL_TOPIC_LIST_FROM_NAMESERVER, {}, b""),
        ("namesrv", RC.DELETE_TOPIC_IN_NAMESRV, {"topic": "T9"}, b""),
        ("namesrv", RC.UNREGISTER_BROKER, fake, b""),
    ]  # fmt: skip


def _mutations(fields: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    out = []
    for name in fields:
        out.append((f"without {name}", {k: v for k, v in fields.items() if k != name}))
        out.extend((f"{name}={bad[:20]!r}", fields | {name: bad}) for bad in BAD_VALUES)
    return out


OTHER_JSON: list[object] = [5, 2**70, 1.5, "x", [], {}, None, [5], [{}], ["x"]]


def _json_paths(doc: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """The path of every value in `doc` (object keys and list indexes), outermost first."""
    if isinstance(doc, dict):
        items: list[tuple[object, object]] = list(doc.items())
    elif isinstance(doc, list):
        items = list(enumerate(doc))
    else:
        return []
    out: list[tuple[object, ...]] = []
    for key, value in items:
        out.append((*path, key))
        out += _json_paths(value, (*path, key))
    return out


def _replaced(doc: object, path: tuple[object, ...], value: object) -> object:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return doc | {head: _replaced(doc[head], rest, value)}
    assert isinstance(doc, list) and isinstance(head, int)
    return [_replaced(v, rest, value) if i == head else v for i, v in enumerate(doc)]


def _json(doc: object) -> bytes:
    return json.dumps(doc).encode()  # not orjson: it cannot write an int past 64 bits


def _body_mutations(body: bytes) -> list[tuple[str, bytes]]:
    """Bad bodies: garbage, cut short, and for JSON every value replaced by one of another
    type, at every depth."""
    out = [
        ("empty body", b""),
        ("garbage body", b"\x00\xff{]"),
        ("half the body", body[: len(body) // 2]),
    ]
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return out
    out += [(f"body {other!r}", _json(other)) for other in OTHER_JSON]
    for path in _json_paths(doc):
        for other in OTHER_JSON:
            bad = _json(_replaced(doc, path, other))
            out.append((f"body {'.'.join(map(str, path))}={other!r}", bad))
    return out


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info is not None]


async def test_every_bad_header_field_gets_an_answer_of_its_own(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING)
    answer = lambda _conn, cmd: cmd.response(ResponseCode.SUCCESS)  # noqa: E731  (reply pushes)
    async with running_cluster(tmp_path) as c, RemotingClient(handler=answer) as requester:
        await c.create_topic("T")
        sent = await c.call(RC.SEND_MESSAGE_V2, b"first", **_V2)
        assert sent.code == ResponseCode.SUCCESS, sent.remark
        assert c.broker.store.look_message_by_offset(0) is not None  # the first record
        addr: dict[str, Callable[[], str]] = {"broker": lambda: c.br, "namesrv": lambda: c.ns}
        problems: list[str] = []
        half_props = "TRAN_MSG\u0001true\u0002PGROUP\u0001PG\u0002"
        half = await c.call(RC.SEND_MESSAGE_V2, b"half", **(_V2 | {"i": half_props}))
        assert half.code == ResponseCode.SUCCESS, half.remark
        end_tx = {
            "producerGroup": "PG", "tranStateTableOffset": half.ext_fields["queueOffset"],
            "commitLogOffset": str(decode_offset_msg_id(half.ext_fields["msgId"])[1]),
            "commitOrRollback": "8", "fromTransactionCheck": "false",
            "msgId": half.ext_fields["msgId"],
        }  # fmt: skip
        hb = HeartbeatData(REQUESTER, producer_groups=["RPG"]).encode()
        assert (await requester.invoke(c.br, RemotingCommand(RC.HEART_BEAT, body=hb))).code == 0
        for server, code, fields, body in _templates(c, 0, sent.ext_fields["msgId"], end_tx):
            ok = await c.call(code, body, addr[server](), **fields)
            assert ok.code == ResponseCode.SUCCESS, (RC(code).name, ok.remark)
            bad_bodies = _body_mutations(body) if body else []
            cases = [(what, ext, body) for what, ext in _mutations(fields)]
            cases += [(what, fields, bad) for what, bad in bad_bodies]
            for what, ext, data in cases:
                request = RemotingCommand(code, ext_fields=ext, body=data)
                try:
                    r = await c.client.invoke(addr[server](), request, 5.0)
                except Exception as exc:  # a closed connection or no answer
                    problems.append(f"{RC(code).name} {what}: {exc!r}")
                    continue
                remark = r.remark or ""
                if r.code != ResponseCode.SUCCESS and any(w in remark for w in PYTHON_ERRORS):
                    problems.append(f"{RC(code).name} {what}: {r.code} {remark[:120]}")
        problems += _tracebacks(caplog)
        assert problems == [], "\n".join(problems)
        still = await c.call(RC.SEND_MESSAGE_V2, b"after", **_V2)
        assert still.code == ResponseCode.SUCCESS
        c.broker.offsets.persist()  # what the requests committed can still be written
