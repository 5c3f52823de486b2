"""How a slave's tables take its master's copies: replaced, merged, persisted."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from rmqkit.common.group import SubscriptionGroupConfig
from rmqkit.common.topic import DataVersion, TopicConfig
from rmqkit.server.broker.broker import Broker
from rmqkit.server.broker.groups import SubscriptionGroupTable
from rmqkit.server.broker.json_file import load_json
from rmqkit.server.broker.offsets import ConsumerOffsetTable
from rmqkit.server.broker.schedule import ScheduleService
from rmqkit.server.broker.topic_table import TopicTable


def test_topics_are_replaced_with_the_masters_version(tmp_path: Path) -> None:
    t = TopicTable(tmp_path / "topics.json", default_queue_nums=4, auto_create=True)
    t.load()
    t.put(TopicConfig("OnlyHere", 1, 1))
    master = DataVersion(0, 123, 42)
    t.replace_all({"A": TopicConfig("A", 2, 2)}, master)
    assert set(t.topics) == {"A"} and t.data_version == master
    master.next_version()  # the table keeps its own copy
    assert t.data_version == DataVersion(0, 123, 42)
    again = TopicTable(tmp_path / "topics.json", default_queue_nums=4, auto_create=False)
    again.load()
    assert "A" in again.topics and "OnlyHere" not in again.topics
    assert again.data_version == DataVersion(0, 123, 42)


def test_groups_are_replaced_and_persisted(tmp_path: Path) -> None:
    g = SubscriptionGroupTable(tmp_path / "subscriptionGroup.json", auto_create=True)
    g.put(SubscriptionGroupConfig("Old"))
    g.replace_all({"New": SubscriptionGroupConfig("New", broker_id=1)}, DataVersion(0, 1, 7))
    again = SubscriptionGroupTable(tmp_path / "subscriptionGroup.json", auto_create=False)
    again.load()
    assert list(again.groups) == ["New"] and again.groups["New"].broker_id == 1
    assert again.data_version.counter == 7


def test_offsets_merge_by_key_and_persist_only_changes(tmp_path: Path) -> None:
    path = tmp_path / "consumerOffset.json"
    o = ConsumerOffsetTable(path)
    o.commit("G", "T", 0, 5)
    o.commit("G2", "T", 0, 9)  # committed on the slave while its master was down
    assert o.merge({"T@G": {0: 7, 1: 3}}) is True
    assert o.table == {"T@G": {0: 7, 1: 3}, "T@G2": {0: 9}} and not o.dirty
    assert load_json(path) == {"offsetTable": {"T@G": {"0": 7, "1": 3}, "T@G2": {"0": 9}}}
    path.unlink()
    assert o.merge({"T@G": {0: 7, 1: 3}}) is False
    assert not path.exists()


def test_delay_offsets_are_replaced_and_written(tmp_path: Path) -> None:
    path = tmp_path / "delayOffset.json"
    s = ScheduleService(cast(Broker, object()), path)
    s.replace_offsets({1: 4, 2: 0})
    assert s.offsets == {1: 4, 2: 0}
    assert load_json(path) == {"offsetTable": {"1": 4, "2": 0}}
    again = ScheduleService(cast(Broker, object()), path)
    again.load()
    assert again.offsets == {1: 4, 2: 0}
