"""Subscription groups: per consumer group settings (RocketMQ `SubscriptionGroupManager`).

Persisted as `config/subscriptionGroup.json`; created on first use when
`autoCreateSubscriptionGroup` is on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmqkit.common.java_values import field_bool, field_int
from rmqkit.common.topic import DataVersion
from rmqkit.server.broker.json_file import load_json, save_json

log = logging.getLogger("rmqkit.broker.groups")


@dataclass(slots=True)
class SubscriptionGroupConfig:
    """One consumer group's settings (RocketMQ `SubscriptionGroupConfig`)."""

    group_name: str
    consume_enable: bool = True
    consume_broadcast_enable: bool = True
    retry_queue_nums: int = 1
    retry_max_times: int = 16
    consume_message_orderly: bool = False
    broker_id: int = 0
    """The broker a pull that keeps up is sent to, with slaveReadEnable (0: the master)."""
    which_broker_when_consume_slowly: int = 1
    """The broker a pull that has fallen behind is sent to, with slaveReadEnable."""

    def to_json(self) -> dict[str, Any]:
        return {
            "groupName": self.group_name,
            "consumeEnable": self.consume_enable,
            "consumeBroadcastEnable": self.consume_broadcast_enable,
            "retryQueueNums": self.retry_queue_nums,
            "retryMaxTimes": self.retry_max_times,
            "consumeMessageOrderly": self.consume_message_orderly,
            "brokerId": self.broker_id,
            "whichBrokerWhenConsumeSlowly": self.which_broker_when_consume_slowly,
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
        )


class SubscriptionGroupTable:
    def __init__(self, path: Path | None, *, auto_create: bool) -> None:
        self.path = path
        self.auto_create = auto_create
        self.groups: dict[str, SubscriptionGroupConfig] = {}
        self.data_version = DataVersion()

    def load(self) -> None:
        data = load_json(self.path) if self.path else None
        if data:
            for name, cfg in (data.get("subscriptionGroupTable") or {}).items():
                try:
                    self.groups[name] = SubscriptionGroupConfig.from_json(cfg)
                except (KeyError, TypeError, ValueError) as exc:
                    log.error("subscriptionGroup.json: skipping group %r: %s", name, exc)
            self.data_version = DataVersion.from_json(data.get("dataVersion"))

    def persist(self) -> None:
        if self.path is not None:
            save_json(
                self.path,
                {
                    "subscriptionGroupTable": {n: g.to_json() for n, g in self.groups.items()},
                    "dataVersion": self.data_version.to_json(),
                },
            )

    def find(self, group: str) -> SubscriptionGroupConfig | None:
        """The group's settings; created with defaults on first use if auto-creation is on."""
        cfg = self.groups.get(group)
        if cfg is None and self.auto_create:
            cfg = self.put(SubscriptionGroupConfig(group))
        return cfg

    def put(self, cfg: SubscriptionGroupConfig) -> SubscriptionGroupConfig:
        self.groups[cfg.group_name] = cfg
        self.data_version.next_version()
        self.persist()
        return cfg

    def replace_all(self, groups: dict[str, SubscriptionGroupConfig], version: DataVersion) -> None:
        """Take a master's groups and data version as they are, and persist (slave sync)."""
        self.groups.clear()
        self.groups.update(groups)
        self.data_version = DataVersion(version.state_version, version.timestamp, version.counter)
        self.persist()

    def delete(self, group: str) -> bool:
        if self.groups.pop(group, None) is None:
            return False
        self.data_version.next_version()
        self.persist()
        return True
