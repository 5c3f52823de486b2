"""Subscription groups: per consumer group settings (RocketMQ `SubscriptionGroupManager`).

Persisted as `config/subscriptionGroup.json`; created on first use when
`autoCreateSubscriptionGroup` is on.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rmqkit.common.group import SubscriptionGroupConfig
from rmqkit.common.topic import DataVersion
from rmqkit.server.broker.json_file import load_json, save_json

log = logging.getLogger("rmqkit.broker.groups")


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
