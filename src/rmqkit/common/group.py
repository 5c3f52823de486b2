"""A consumer group's settings on a broker (RocketMQ `SubscriptionGroupConfig`), with its JSON
form: the body of UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, the entries of
GET_ALL_SUBSCRIPTIONGROUP_CONFIG and of a broker's `subscriptionGroup.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rmqkit.common.java_values import field_bool, field_int


@dataclass(slots=True)
class SubscriptionGroupConfig:
    """One consumer group's settings (RocketMQ `SubscriptionGroupConfig`)."""

    group_name: str
    consume_enable: bool = True
    """False: the broker answers the group's pulls with NO_PERMISSION."""
    consume_broadcast_enable: bool = True
    retry_queue_nums: int = 1
    retry_max_times: int = 16
    """Deliveries after the first before a message goes to `%DLQ%<group>`."""
    consume_message_orderly: bool = False
    broker_id: int = 0
    """The broker a pull that keeps up is sent to, with slaveReadEnable (0: the master)."""
    which_broker_when_consume_slowly: int = 1
    """The broker a pull that has fallen behind is sent to, with slaveReadEnable."""
    consume_from_min_enable: bool = True
    """Kept and shown as RocketMQ keeps it; neither RocketMQ's broker nor rmqkit's acts on it."""
    notify_consumer_ids_changed_enable: bool = True
    """False: the group's members are not told (NOTIFY_CONSUMER_IDS_CHANGED) when one comes or
    goes; they find out at their next rebalance."""

    def to_json(self) -> dict[str, Any]:
        return {
            "groupName": self.group_name,
            "consumeEnable": self.consume_enable,
            "consumeFromMinEnable": self.consume_from_min_enable,
            "consumeBroadcastEnable": self.consume_broadcast_enable,
            "retryQueueNums": self.retry_queue_nums,
            "retryMaxTimes": self.retry_max_times,
            "consumeMessageOrderly": self.consume_message_orderly,
            "brokerId": self.broker_id,
            "whichBrokerWhenConsumeSlowly": self.which_broker_when_consume_slowly,
            "notifyConsumerIdsChangedEnable": self.notify_consumer_ids_changed_enable,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SubscriptionGroupConfig:
        """The group a JSON object describes, as Java reads it.

        Raises:
            KeyError: no groupName.
            ValueError: a number that is not one, or does not fit its Java type.
        """
        return cls(
            str(d["groupName"]),
            field_bool(d, "consumeEnable", True),
            field_bool(d, "consumeBroadcastEnable", True),
            field_int(d, "retryQueueNums", 1, 32),
            field_int(d, "retryMaxTimes", 16, 32),
            field_bool(d, "consumeMessageOrderly", False),
            field_int(d, "brokerId", 0),
            field_int(d, "whichBrokerWhenConsumeSlowly", 1),
            field_bool(d, "consumeFromMinEnable", True),
            field_bool(d, "notifyConsumerIdsChangedEnable", True),
        )
