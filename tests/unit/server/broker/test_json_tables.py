"""The broker's JSON tables as a user may have edited them: a group or topic that Java would not
read is skipped with a line naming it, and the others load."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import orjson
import pytest

from rmqkit.server.broker.groups import SubscriptionGroupTable
from rmqkit.server.broker.offsets import ConsumerOffsetTable
from rmqkit.server.broker.schedule import ScheduleService
from rmqkit.server.broker.topic_table import TopicTable


def test_a_bad_group_is_skipped_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "subscriptionGroup.json"
    groups = {
        "Good": {"groupName": "Good", "consumeEnable": "false"},
        "Bad": {"groupName": "Bad", "retryMaxTimes": "often"},
        "Flag": {"groupName": "Flag", "consumeBroadcastEnable": "perhaps"},
    }
    path.write_bytes(orjson.dumps({"subscriptionGroupTable": groups}))
    table = SubscriptionGroupTable(path, auto_create=False)
    with caplog.at_level(logging.ERROR):
        table.load()
    assert set(table.groups) == {"Good"}
    assert table.groups["Good"].consume_enable is False
    text = caplog.text
    assert "skipping group 'Bad': retryMaxTimes 'often' is not a number" in text
    assert "skipping group 'Flag': consumeBroadcastEnable 'perhaps' is not a boolean" in text


def test_a_bad_topic_is_skipped_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "topics.json"
    topics = {
        "Good": {"topicName": "Good", "readQueueNums": 2, "writeQueueNums": 2, "order": "false"},
        "Wide": {"topicName": "Wide", "readQueueNums": 2**32},
    }
    path.write_bytes(orjson.dumps({"topicConfigTable": topics}))
    table = TopicTable(path, default_queue_nums=4, auto_create=False)
    with caplog.at_level(logging.ERROR):
        table.load()
    good = table.get("Good")
    assert good is not None and good.order is False and good.read_queue_nums == 2
    assert table.get("Wide") is None
    assert "skipping topic 'Wide': readQueueNums 4294967296 is not a number" in caplog.text


def test_consumer_offsets_java_would_not_read_are_skipped_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "consumerOffset.json"
    table = {
        "T@Good": {"0": 12, "1": "7"},
        "T@Huge": {"0": 2**64},
        "T@Text": {"0": "twelve"},
        "NoGroup": {"0": 1},
    }
    path.write_text(json.dumps({"offsetTable": table}))  # orjson cannot write 2**64
    offsets = ConsumerOffsetTable(path)
    with caplog.at_level(logging.ERROR):
        offsets.load()
    assert offsets.table == {"T@Good": {0: 12, 1: 7}}
    for key in ("T@Huge", "T@Text", "NoGroup"):
        assert f"consumerOffset.json: skipping {key}:" in caplog.text
    offsets.persist()  # what was kept can be written again
    again = ConsumerOffsetTable(path)
    again.load()
    assert again.table == offsets.table


def test_delay_offsets_java_would_not_read_start_delivery_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "delayOffset.json"
    path.write_bytes(b'{"offsetTable": {"1": 5, "2": "soon"}}')
    schedule = ScheduleService(None, path)  # type: ignore[arg-type]  # load reads no broker
    with caplog.at_level(logging.ERROR):
        schedule.load()
    assert schedule.offsets == {}
    assert "delayOffset.json: offsetTable['2'] must be an integer" in caplog.text
    path.write_bytes(b'{"offsetTable": {"1": 5, "2": "6"}}')
    schedule.load()
    assert schedule.offsets == {1: 5, 2: 6}
