"""The send processor's plain path builds exactly what its general path builds, and leaves
everything else to it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from rmqkit.common.topic import PERM_READ, TopicConfig
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.server.broker.broker import Broker
from rmqkit.server.broker.headers import SEND_V2_NAMES
from rmqkit.server.broker.processors.send import SendProcessor
from rmqkit.server.settings import BrokerSettings
from rmqkit.server.store import MessageToStore, StoreSettings

BODY = b"x" * 64
PROPS = "TAGS\x01TagA\x02KEYS\x01order-1\x02UNIQ_KEY\x017F0000010B6418B4AAC2000000000001\x02"
FIELDS = {
    "producerGroup": "pg", "topic": "orders", "defaultTopic": "TBW102",
    "defaultTopicQueueNums": "4", "queueId": "3", "sysFlag": "0",
    "bornTimestamp": "1763700000000", "flag": "5", "properties": PROPS, "reconsumeTimes": "0",
    "unitMode": "false", "batch": "false",
}  # fmt: skip
V2_LETTERS = {name: letter for letter, name in SEND_V2_NAMES.items()}


@dataclasses.dataclass
class Peer:
    """The one attribute of a connection that building a message reads."""

    peer_host: tuple[str, int] = ("10.1.2.3", 40000)


@pytest.fixture
def send(tmp_path: Path) -> SendProcessor:
    broker = Broker(
        BrokerSettings(
            listen_host="127.0.0.1", listen_port=0, namesrv_addr=None,
            store=StoreSettings(store_path_root_dir=tmp_path),
        )
    )  # fmt: skip
    broker.topics.put(TopicConfig("orders", 4, 4))
    broker.topics.put(TopicConfig("read-only", 4, 4, perm=PERM_READ))
    return SendProcessor(broker)


def request(v2: bool, **changes: str | None) -> RemotingCommand:
    fields = {k: v for k, v in {**FIELDS, **changes}.items() if v is not None}
    if v2:
        fields = {V2_LETTERS[k]: v for k, v in fields.items()}
    code = RequestCode.SEND_MESSAGE_V2 if v2 else RequestCode.SEND_MESSAGE
    return RemotingCommand(code, ext_fields=fields, body=BODY)


def general(send: SendProcessor, cmd: RemotingCommand) -> Any:
    """What `_prepare` makes of `cmd` with the plain path switched off."""
    plain = send._plain
    send._plain = lambda conn, cmd: None  # type: ignore[method-assign]
    try:
        return send._prepare(Peer(), cmd)  # type: ignore[arg-type]
    finally:
        send._plain = plain  # type: ignore[method-assign]


@pytest.mark.parametrize("v2", [True, False], ids=["V2", "V1"])
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"properties": PROPS.rstrip("\x02")},  # no closing separator
        {"properties": PROPS + "WAIT\x01false\x02"},
        {"properties": None},
        {"flag": None, "reconsumeTimes": None, "batch": None},
        {"queueId": " 2 ", "reconsumeTimes": "3"},
    ],
    ids=["usual", "unterminated", "no-wait", "no-properties", "optional-missing", "spaces"],
)
def test_the_plain_path_builds_what_the_general_path_builds(
    send: SendProcessor, v2: bool, changes: dict[str, str | None]
) -> None:
    fast, slow = request(v2, **changes), request(v2, **changes)
    plain = send._plain(Peer(), fast)  # type: ignore[arg-type]
    assert isinstance(plain, MessageToStore)
    assert [plain] == general(send, slow)
    assert fast.ext_fields == slow.ext_fields  # the response reads queueId from here


def test_the_plain_path_picks_a_queue_when_asked_to(send: SendProcessor) -> None:
    ids = {send._plain(Peer(), request(True, queueId="-1")).queue_id for _ in range(200)}  # type: ignore[arg-type, union-attr]
    assert ids == {0, 1, 2, 3}


@pytest.mark.parametrize(
    "changes",
    [
        {"batch": "true"},
        {"batch": "TRUE"},
        {"properties": PROPS + "TRAN_MSG\x01true\x02"},
        {"properties": PROPS + "TIMER_DELAY_MS\x015000\x02"},
        {"topic": "unknown"},
        {"topic": "read-only"},
        {"topic": "SCHEDULE_TOPIC_XXXX"},
        {"topic": None},
        {"queueId": "4"},
        {"queueId": "1.0"},
        {"sysFlag": None},
        {"bornTimestamp": "soon"},
        {"flag": "x"},
    ],
)
@pytest.mark.parametrize("v2", [True, False], ids=["V2", "V1"])
def test_everything_else_takes_the_general_path(
    send: SendProcessor, v2: bool, changes: dict[str, str | None]
) -> None:
    assert send._plain(Peer(), request(v2, **changes)) is None  # type: ignore[arg-type]


def test_the_general_path_still_refuses_with_its_remark(send: SendProcessor) -> None:
    r = send._prepare(Peer(), request(True, queueId="4"))  # type: ignore[arg-type]
    assert isinstance(r, RemotingCommand)
    assert r.code == ResponseCode.SYSTEM_ERROR
    assert r.remark is not None and "queueId[4] is illegal" in r.remark
