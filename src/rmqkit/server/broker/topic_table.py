"""The broker's topics: configuration per topic, auto-creation through TBW102, retry topics.

RocketMQ's `TopicConfigManager`, persisted as `config/topics.json`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rmqkit.common.names import DEFAULT_TOPIC, SELF_TEST_TOPIC, retry_topic
from rmqkit.common.topic import PERM_INHERIT, PERM_RW, DataVersion, TopicConfig
from rmqkit.server.broker.json_file import load_json, save_json

log = logging.getLogger("rmqkit.broker.topics")


class TopicTable:
    """Topic name -> TopicConfig, with a data version the NameServer compares."""

    def __init__(self, path: Path | None, *, default_queue_nums: int, auto_create: bool) -> None:
        self.path = path
        self.default_queue_nums = default_queue_nums
        self.auto_create = auto_create
        self.topics: dict[str, TopicConfig] = {}
        self.data_version = DataVersion()

    def load(self) -> None:
        data = load_json(self.path) if self.path else None
        if data:
            for name, cfg in (data.get("topicConfigTable") or {}).items():
                try:
                    self.topics[name] = TopicConfig.from_json(cfg)
                except (KeyError, TypeError, ValueError) as exc:
                    log.error("topics.json: skipping topic %r: %s", name, exc)
            self.data_version = DataVersion.from_json(data.get("dataVersion"))
        self._system_topics()

    def _system_topics(self) -> None:
        if self.auto_create:
            self.topics[DEFAULT_TOPIC] = TopicConfig(
                DEFAULT_TOPIC,
                self.default_queue_nums,
                self.default_queue_nums,
                PERM_INHERIT | PERM_RW,
            )
        else:
            self.topics.pop(DEFAULT_TOPIC, None)
        self.topics.setdefault(SELF_TEST_TOPIC, TopicConfig(SELF_TEST_TOPIC, 1, 1))

    def persist(self) -> None:
        if self.path is None:
            return
        save_json(
            self.path,
            {
                "topicConfigTable": {n: c.to_json() for n, c in self.topics.items()},
                "dataVersion": self.data_version.to_json(),
            },
        )

    def get(self, topic: str) -> TopicConfig | None:
        return self.topics.get(topic)

    def put(self, cfg: TopicConfig) -> None:
        """Create or replace a topic, bump the data version and persist."""
        self.topics[cfg.topic_name] = cfg
        self.data_version.next_version()
        self.persist()
        log.info("topic %s: %d/%d queues, perm %d", cfg.topic_name, cfg.read_queue_nums,
                 cfg.write_queue_nums, cfg.perm)  # fmt: skip

    def replace_all(self, topics: dict[str, TopicConfig], version: DataVersion) -> None:
        """Take a master's topics and data version as they are, and persist (slave sync).

        Topics the master no longer has go, as RocketMQ's `SlaveSynchronize` deletes them.
        """
        self.topics.clear()
        self.topics.update(topics)
        self.data_version = DataVersion(version.state_version, version.timestamp, version.counter)
        self.persist()
        log.info("topics replaced by the master's: %d topics, data version %d", len(topics),
                 version.counter)  # fmt: skip

    def delete(self, topic: str) -> bool:
        if self.topics.pop(topic, None) is None:
            return False
        self.data_version.next_version()
        self.persist()
        return True

    def create_in_send(self, topic: str, default_topic: str, queue_nums: int) -> TopicConfig | None:
        """Create `topic` from its template (TBW102) as a first send does; None if not allowed."""
        template = self.topics.get(default_topic)
        if template is None or not template.perm & PERM_INHERIT:
            return None
        n = max(0, min(queue_nums, template.write_queue_nums))
        if n == 0:
            return None
        cfg = TopicConfig(topic, n, n, template.perm & ~PERM_INHERIT)
        self.put(cfg)
        return cfg

    def ensure_retry_topic(self, group: str, queue_nums: int = 1) -> tuple[TopicConfig, bool]:
        """`%RETRY%<group>` for a clustering group; returns (config, created now)."""
        name = retry_topic(group)
        cfg = self.topics.get(name)
        if cfg is not None:
            return cfg, False
        cfg = TopicConfig(name, queue_nums, queue_nums, PERM_RW)
        self.put(cfg)
        return cfg, True
