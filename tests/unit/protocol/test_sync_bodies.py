"""The bodies a slave fetches from its master: rmqkit's JSON and fastjson's bare integer keys."""

from __future__ import annotations

import pytest

from rmqkit.common.topic import DataVersion, TopicConfig
from rmqkit.protocol.route import BodyError
from rmqkit.protocol.sync_bodies import (
    decode_consumer_offsets,
    decode_delay_offsets,
    decode_subscription_groups,
    decode_topic_configs,
    encode_consumer_offsets,
    encode_delay_offsets,
)


def test_consumer_offsets_round_trip() -> None:
    table = {"T@G": {0: 12, 3: 7}, "%RETRY%G@G": {0: 0}}
    body = encode_consumer_offsets(table)
    assert body.startswith(b'{"offsetTable":{"T@G":{"0":12,"3":7}')
    assert decode_consumer_offsets(body) == table


def test_consumer_offsets_as_a_java_master_writes_them() -> None:
    body = b'{"dataVersion":{"counter":3,"timestamp":1},"offsetTable":{"T@G":{0:12,1:5}}}'
    assert decode_consumer_offsets(body) == {"T@G": {0: 12, 1: 5}}


def test_delay_offsets_round_trip_and_fastjson() -> None:
    assert encode_delay_offsets({1: 123, 3: 4}) == b'{"offsetTable":{"1":123,"3":4}}'
    assert decode_delay_offsets(encode_delay_offsets({1: 123})) == {1: 123}
    assert decode_delay_offsets(b'{"offsetTable":{1:123,2:0}}') == {1: 123, 2: 0}
    assert decode_delay_offsets(b"{}") == {}


def test_topic_configs_with_their_data_version() -> None:
    body = (
        b'{"topicConfigTable":{"T":{"topicName":"T","readQueueNums":2,"writeQueueNums":2,'
        b'"perm":6,"order":true}},"dataVersion":{"stateVersion":0,"timestamp":5,"counter":9}}'
    )
    topics, version = decode_topic_configs(body)
    assert topics == {"T": TopicConfig("T", 2, 2, 6, order=True)}
    assert version == DataVersion(0, 5, 9)


def test_subscription_groups_stay_json_objects() -> None:
    body = (
        b'{"subscriptionGroupTable":{"G":{"groupName":"G","brokerId":1}},'
        b'"dataVersion":{"counter":2,"timestamp":7}}'
    )
    groups, version = decode_subscription_groups(body)
    assert groups == {"G": {"groupName": "G", "brokerId": 1}}
    assert version == DataVersion(0, 7, 2)


@pytest.mark.parametrize(
    ("decode", "body", "says"),
    [
        (decode_consumer_offsets, b'{"offsetTable":{"noAt":{"0":1}}}', "topic>@<group"),
        (decode_consumer_offsets, b'{"offsetTable":{"T@G":{"0":"x"}}}', "integer"),
        (decode_delay_offsets, b'{"offsetTable":[1,2]}', "JSON object"),
        (
            decode_consumer_offsets,
            b'{"offsetTable":{"T@G":{"0":9223372036854775808}}}',
            "Java long",
        ),
        (decode_consumer_offsets, b'{"offsetTable":{"T@G":{"2147483648":1}}}', "Java int"),
        (decode_delay_offsets, b'{"offsetTable":{"3":true}}', "integer"),
        (decode_topic_configs, b'{"topicConfigTable":{"T":{"perm":6}}}', "topicConfigTable"),
        (decode_subscription_groups, b"not json", "not valid JSON"),
    ],
)
def test_bad_bodies_say_what_is_wrong(decode, body: bytes, says: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BodyError, match=says):
        decode(body)
