"""Plain ACL (RocketMQ's ACL 1.0) with real clients: ali-ons and the C++ client sign their requests
the way `rmqkit serve` with aclEnable=true checks them.

The broker reads broker.properties (`rmqkit serve --config`) and the plain_acl.yml beside it. A
signed client may send and consume what its account allows; a wrong secret, a missing key or a
denied topic is refused with RocketMQ's SYSTEM_ERROR + AclException remark, and nothing is stored.
ali-ons signs AccessKey, OnsChannel and the header; librocketmq (2.x) signs every request, with
an empty AccessKey when it has no credentials.
"""

from __future__ import annotations

import itertools

import pytest

from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.protocol.acl import SessionCredentials
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.record import StoredMessage
from rmqkit.server.acl.validator import ACL_EXCEPTION
from rmqkit.testing import check_for

from .harness import Client, Event, Lab

pytestmark = pytest.mark.integration

ADMIN = SessionCredentials("interopAdmin", "adminSecret01")
APP = SessionCredentials("interopApp01", "appSecret01")
ACCOUNTS = """\
accounts:
  - accessKey: interopAdmin
    secretKey: adminSecret01
    admin: true
  - accessKey: interopApp01
    secretKey: appSecret01
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms: [TP_acl=PUB|SUB, TP_cross=PUB|SUB, TP_denied=DENY]
    groupPerms: [GID_acl=SUB, GID_cross=SUB]
"""
BAD_SIGNATURE = "Check signature failed for accessKey=interopApp01"
TOPICS = ("TP_acl", "TP_cross", "TP_denied")
QUEUES = {0, 1, 2, 3}
BIG = "".join(chr(ord("a") + i % 26) for i in range(6000))  # compressed: the signed body is zlib
_names = itertools.count()


def keys_of(creds: SessionCredentials, secret: str | None = None) -> dict[str, str]:
    """The driver config naming an account (see tools/interop/*_client.*)."""
    return {"accessKey": creds.access_key, "secretKey": secret or creds.secret_key}


def outgoing(prefix: str, alions: bool) -> list[Event]:
    """Messages with tags, keys (one not ASCII: signed as UTF-8) and one compressed body."""
    rows = [(f"{prefix}{i}", f"Tag{i % 2}", f"{prefix}-key{i}") for i in range(6)]
    rows += [(f"{prefix}-ü", "TagÜ", f"{prefix}-clé"), (BIG, "Tag0", "big")]
    return [{"body": b, "tag": t, "keys": [k] if alions else k} for b, t, k in rows]


def delivered(consumer: Client) -> dict[str, tuple[str, str]]:
    return {m["body"]: (m["tags"], m["keys"]) for m in consumer.messages}


def expected(msgs: list[Event]) -> dict[str, tuple[str, str]]:
    return {m["body"]: (m["tag"], "".join(m["keys"])) for m in msgs}


@pytest.fixture
async def acl_lab(unstarted_lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Lab:
    """`rmqkit serve --config broker.properties` (aclEnable=true), plain_acl.yml in that folder,
    the topics created by the admin account."""
    lab = unstarted_lab
    monkeypatch.delenv("ROCKETMQ_HOME", raising=False)  # else the files would be looked for there
    (lab.root / "plain_acl.yml").write_text(ACCOUNTS)
    await lab.start_server(properties={"aclEnable": "true"})
    assert (lab.root / "broker.properties").is_file()
    # The broker enforces ACL: an unsigned request is refused (no test can pass vacuously).
    ext = {"topic": "TBW102", "queueId": "0"}
    r = await lab.request(RequestCode.GET_MAX_OFFSET, ext)
    assert (r.code, r.remark) == (
        ResponseCode.SYSTEM_ERROR, f"{ACL_EXCEPTION}: No accessKey is configured"
    )  # fmt: skip
    lab.credentials = ADMIN  # creating topics needs an admin; reading offsets a valid signature
    for topic in TOPICS:
        await lab.create_topic(topic)
    return lab


async def stored(lab: Lab, topic: str) -> int:
    return sum([await lab.max_offset(topic, q) for q in sorted(QUEUES)])


# ali-ons ---------------------------------------------------------------------------------------


async def test_alions_signed_producer_and_consumer(acl_lab: Lab) -> None:
    lab = acl_lab
    consumer = await lab.alions("alions-consumer", "consume", group="GID_acl", topic="TP_acl",
                                **keys_of(APP))  # fmt: skip
    # Its heartbeat, consumer list and offset queries passed: it owns every queue.
    await consumer.wait_for(lambda: consumer.queues() == QUEUES, what="all queues taken")
    msgs = outgoing("js", alions=True)
    producer = await lab.produce("alions", "TP_acl", msgs, **keys_of(APP))
    assert not producer.of("sendFailed"), producer.describe()
    await consumer.wait_for(lambda: delivered(consumer) == expected(msgs), what="every message")
    await consumer.finish_ok()
    assert len(consumer.messages) == len(msgs), "a message was consumed twice"
    assert await stored(lab, "TP_acl") == len(msgs)
    await lab.stop_server()


@pytest.mark.parametrize(
    ("topic", "credentials", "reason"),
    [
        ("TP_acl", {}, "No accessKey is configured"),  # ali-ons then signs nothing
        ("TP_acl", keys_of(APP, "wrongSecret"), BAD_SIGNATURE),
        ("TP_denied", keys_of(APP), "No permission for topic:TP_denied"),
    ],
    ids=["no-credentials", "wrong-secret", "denied-topic"],
)
async def test_alions_refused_send_stores_nothing(
    acl_lab: Lab, topic: str, credentials: dict[str, str], reason: str
) -> None:
    lab = acl_lab
    producer = await lab.alions("alions-producer", "produce", topic=topic, group="PID_acl",
                                messages=[{"body": "refused"}], **credentials)  # fmt: skip
    assert await producer.finish() == 1, producer.describe()
    # ali-ons retries a SYSTEM_ERROR and then throws without the remark; the driver reports each
    # attempt's answer.
    failed = producer.of("sendFailed")
    assert failed, producer.describe()
    assert {(f["code"], f["message"]) for f in failed} == {
        (ResponseCode.SYSTEM_ERROR, f"{ACL_EXCEPTION}: {reason}")
    }, producer.describe()
    assert not producer.of("sent")
    assert "still failed" in producer.of("error")[0]["message"], producer.describe()
    assert await stored(lab, topic) == 0
    await lab.stop_server()


# the C++ client --------------------------------------------------------------------------------


async def test_cpp_signed_producer_and_consumer(acl_lab: Lab) -> None:
    lab = acl_lab
    msgs = outgoing("cpp", alions=False)
    early, late = msgs[:4], msgs[4:]
    await lab.produce("cpp", "TP_acl", early, **keys_of(APP))
    consumer = await lab.cpp("cpp-consumer", "consume", group="GID_acl", topic="TP_acl",
                             **keys_of(APP))  # fmt: skip
    await consumer.wait_for(lambda: delivered(consumer) == expected(early), what="early messages")
    await lab.produce("cpp", "TP_acl", late, **keys_of(APP))  # while it long-polls
    await consumer.wait_for(lambda: delivered(consumer) == expected(msgs), what="every message")
    await consumer.finish_ok()
    assert len(consumer.messages) == len(msgs), "a message was consumed twice"
    assert await stored(lab, "TP_acl") == len(msgs)
    # Not checked: at shutdown librocketmq's producer sends UNREGISTER_CLIENT with
    # consumerGroup="", which RocketMQ checks as SUB on group "" and so refuses under
    # defaultGroupPerm DENY ("No default permission for group:"); rmqkit does the same, and the
    # client only logs it.
    await lab.stop_server()


def native_log_text(client: Client) -> str:
    path = client.native_log
    return path.read_text(errors="replace") if path is not None and path.exists() else ""


@pytest.mark.parametrize(
    ("credentials", "reason"),
    [
        # librocketmq signs every request; without credentials it sends AccessKey="".
        ({}, "No acl config for "),
        (keys_of(APP, "wrongSecret"), BAD_SIGNATURE),
    ],
    ids=["no-credentials", "wrong-secret"],
)
async def test_cpp_refused_send_stores_nothing(
    acl_lab: Lab, credentials: dict[str, str], reason: str
) -> None:
    lab = acl_lab
    producer = await lab.cpp("cpp-producer", "produce", topic="TP_acl", group="PID_acl",
                             messages=[{"body": "refused"}], **credentials)  # fmt: skip
    assert await producer.finish() == 1, producer.describe()
    assert not producer.of("sent")
    # The send fails; after its retries librocketmq reports "No route info", and its log holds
    # the broker's answer to each attempt.
    assert "ProducerSendSyncFailed" in producer.of("error")[0]["message"], producer.describe()
    remark = f"processSendResponse error remark:{ACL_EXCEPTION}: {reason}, error code:1"
    what = f"the refusal in the C++ client's log\n{producer.describe()}"
    await check_for(lambda: remark in native_log_text(producer), timeout=10, message=what)
    assert await stored(lab, "TP_acl") == 0
    await lab.stop_server()


# rmqkit <-> ali-ons ----------------------------------------------------------------------------


async def test_rmqkit_and_alions_consume_each_others_signed_messages(acl_lab: Lab) -> None:
    lab = acl_lab
    # rmqkit Producer -> ali-ons consumer
    js = await lab.alions("alions-consumer", "consume", group="GID_acl", topic="TP_acl",
                          **keys_of(APP))  # fmt: skip
    await js.wait_for(lambda: js.queues() == QUEUES, what="all queues taken")
    to_js = outgoing("py", alions=True)
    async with Producer("PID_py", lab.namesrv, credentials=APP, instance_name=f"py{next(_names)}",
                        retry_times_when_send_failed=0) as p:  # fmt: skip
        for m in to_js:
            await p.send(Message("TP_acl", m["body"].encode(), tags=m["tag"], keys=m["keys"]))
    await js.wait_for(lambda: delivered(js) == expected(to_js), what="rmqkit's messages")
    await js.finish_ok()

    # ali-ons producer -> rmqkit PushConsumer
    got: list[StoredMessage] = []
    pc = PushConsumer("GID_cross", lab.namesrv, credentials=APP, instance_name=f"py{next(_names)}",
                      consume_from_where="CONSUME_FROM_FIRST_OFFSET")  # fmt: skip
    pc.subscribe("TP_cross")

    async def collect(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        got.extend(msgs)
        return ConsumeResult.SUCCESS

    pc.register(collect)
    from_js = outgoing("js", alions=True)
    async with pc:
        await lab.produce("alions", "TP_cross", from_js, **keys_of(APP))
        await check_for(lambda: len({m.body for m in got}) == len(from_js), timeout=20,
                        message="ali-ons' messages reach the rmqkit consumer")  # fmt: skip
    assert {m.body.decode(): (m.tags, m.keys[0]) for m in got} == expected(from_js)
    await lab.stop_server()
