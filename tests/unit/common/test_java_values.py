"""Values read as Java reads them, and the JSON tables that use them: a group or topic written by
hand or sent by a console with `"consumeEnable": "false"` means false, not true."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmqkit.common.group import SubscriptionGroupConfig
from rmqkit.common.java_values import LONG_MAX, LONG_MIN, json_bool, json_int, parse_int
from rmqkit.common.topic import TopicConfig
from rmqkit.protocol.heartbeat import HeartbeatError, decode_heartbeat
from rmqkit.protocol.route import BodyError, BrokerData


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        (2, False),
        (1.9, True),
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("Y", True),
        ("t", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("n", False),
        ("F", False),
        (float("nan"), False),
        (1e300, False),
    ],
)
def test_json_bool_reads_what_fastjson_reads(value: object, expected: bool) -> None:
    assert json_bool(value) is expected


@pytest.mark.parametrize("value", [None, "", "null", "NULL"])
def test_json_bool_absent_values_give_the_default(value: object) -> None:
    assert json_bool(value, True) is True
    assert json_bool(value, False) is False


@pytest.mark.parametrize("value", ["yes", "no", "2", " true", [], {}, [True]])
def test_json_bool_refuses_anything_else(value: object) -> None:
    assert json_bool(value) is None


def test_json_int_fits_its_java_type() -> None:
    assert json_int(2**31 - 1, 32) == 2**31 - 1
    assert json_int(2**31, 32) is None
    assert json_int(-(2**31), 32) == -(2**31)
    assert json_int("42") == 42 and json_int("42.0") == 42
    assert json_int(True) is None and json_int(5.7) is None and json_int([1]) is None
    assert json_int(str(LONG_MAX + 1)) is None


@given(st.integers())
def test_parse_int_is_a_java_long_or_nothing(n: int) -> None:
    assert parse_int(str(n)) == (n if LONG_MIN <= n <= LONG_MAX else None)


def test_a_group_reads_false_strings_as_false() -> None:
    cfg = SubscriptionGroupConfig.from_json(
        {
            "groupName": "G",
            "consumeEnable": "false",
            "consumeBroadcastEnable": 0,
            "consumeMessageOrderly": "true",
        }
    )
    assert (cfg.consume_enable, cfg.consume_broadcast_enable) == (False, False)
    assert cfg.consume_message_orderly is True
    assert SubscriptionGroupConfig.from_json({"groupName": "G"}).consume_enable is True


def test_a_group_refuses_a_flag_that_is_no_boolean() -> None:
    with pytest.raises(ValueError, match="consumeEnable 'maybe' is not a boolean"):
        SubscriptionGroupConfig.from_json({"groupName": "G", "consumeEnable": "maybe"})


def test_a_topic_reads_its_fields_as_java_does() -> None:
    tc = TopicConfig.from_json(
        {
            "topicName": "T",
            "readQueueNums": "4",
            "writeQueueNums": 4.0,
            "order": "false",
            "topicSysFlag": None,
            "attributes": None,
        }
    )
    assert (tc.read_queue_nums, tc.write_queue_nums, tc.order, tc.topic_sys_flag) == (
        4,
        4,
        False,
        0,
    )
    assert TopicConfig.from_json({"topicName": "T", "order": 1}).order is True
    assert TopicConfig.from_json({"topicName": "T", "topicSynFlag": 3}).topic_sys_flag == 3


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("readQueueNums", 2**31, "readQueueNums 2147483648 is not a number"),
        ("perm", "rw", "perm 'rw' is not a number"),
        ("order", "sometimes", "order 'sometimes' is not a boolean"),
        ("attributes", [1], r"attributes \[1\] is not an object"),
    ],
)
def test_a_topic_refuses_bad_fields_by_name(field: str, value: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        TopicConfig.from_json({"topicName": "T", field: value})


def test_broker_data_and_heartbeat_refuse_a_flag_that_is_no_boolean() -> None:
    d = {"cluster": "C", "brokerName": "b", "brokerAddrs": {}}
    assert BrokerData.from_json({**d, "enableActingMaster": "false"}).enable_acting_master is False
    with pytest.raises(BodyError, match="enableActingMaster must be a boolean"):
        BrokerData.from_json({**d, "enableActingMaster": "x"})
    hb = b'{"clientID":"c","consumerDataSet":[%s]}'
    plain = decode_heartbeat(hb % b'{"groupName":"G","unitMode":"false"}')
    assert plain.consumers[0].unit_mode is False
    with pytest.raises(HeartbeatError, match="unitMode is not a boolean"):
        decode_heartbeat(hb % b'{"groupName":"G","unitMode":{}}')
