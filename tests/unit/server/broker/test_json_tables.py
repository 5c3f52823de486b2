"""The broker's JSON tables as a user may have edited them: a group or topic that Java would not
read is skipped with a line naming it, and the others load."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from rmqkit.server.broker.groups import SubscriptionGroupTable
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
