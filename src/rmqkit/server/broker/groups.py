"""Subscription groups: per consumer group settings (RocketMQ `SubscriptionGroupManager`).

Persisted as `config/subscriptionGroup.json`; created on first use when
`autoCreateSubscriptionGroup` is on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rmqkit.common.topic import DataVersion
from rmqkit.server.broker.json_file import load_json, save_json


@dataclass(slots=True)
class SubscriptionGroupConfig:
    group_name: str
    consume_enable: bool = True
    consume_broadcast_enable: bool = True
    retry_queue_nums: int = 1
    retry_max_times: int = 16
    consume_message_orderly: bool = False

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {
            "groupName": d["group_name"],
            "consumeEnable": d["consume_enable"],
            "consumeBroadcastEnable": d["consume_broadcast_enable"],
            "retryQueueNums": d["retry_queue_nums"],
            "retryMaxTimes": d["retry_max_times"],
            "consumeMessageOrderly": d["consume_message_orderly"],
            "brokerId": 0,
            "whichBrokerWhenConsumeSlowly": 1,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SubscriptionGroupConfig:
        return cls(
            str(d["groupName"]),
            bool(d.get("consumeEnable", True)),
            bool(d.get("consumeBroadcastEnable", True)),
            int(d.get("retryQueueNums", 1)),
            int(d.get("retryMaxTimes", 16)),
            bool(d.get("consumeMessageOrderly", False)),
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
                self.groups[name] = SubscriptionGroupConfig.from_json(cfg)
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

    def delete(self, group: str) -> bool:
        if self.groups.pop(group, None) is None:
            return False
        self.data_version.next_version()
        self.persist()
        return True
