"""SubscriptionGroupConfig's JSON form, as a Java broker or console writes it."""

from __future__ import annotations

from rmqkit.common.group import SubscriptionGroupConfig


def test_every_field_of_javas_json_survives_a_round_trip() -> None:
    java = {
        "groupName": "G", "consumeEnable": False, "consumeFromMinEnable": False,
        "consumeBroadcastEnable": False, "retryQueueNums": 2, "retryMaxTimes": 3,
        "consumeMessageOrderly": True, "brokerId": 1, "whichBrokerWhenConsumeSlowly": 2,
        "notifyConsumerIdsChangedEnable": False,
    }  # fmt: skip
    cfg = SubscriptionGroupConfig.from_json(java)
    assert not cfg.notify_consumer_ids_changed_enable and not cfg.consume_from_min_enable
    assert cfg.to_json() == java


def test_missing_fields_take_javas_defaults() -> None:
    cfg = SubscriptionGroupConfig.from_json({"groupName": "G"})
    assert cfg == SubscriptionGroupConfig("G")
    assert cfg.consume_from_min_enable and cfg.notify_consumer_ids_changed_enable
    assert (cfg.retry_max_times, cfg.retry_queue_nums, cfg.which_broker_when_consume_slowly) == (
        16, 1, 1,
    )  # fmt: skip
