"""Topic configuration, permissions and data versions, as brokers and NameServers exchange them.

RocketMQ's `TopicConfig`, `PermName` and `DataVersion`, with their JSON forms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rmqkit.common.java_values import field_bool, field_int

PERM_PRIORITY = 0x8
PERM_READ = 0x4
PERM_WRITE = 0x2
PERM_INHERIT = 0x1
PERM_RW = PERM_READ | PERM_WRITE


def perm_readable(perm: int) -> bool:
    return bool(perm & PERM_READ)


def perm_writable(perm: int) -> bool:
    return bool(perm & PERM_WRITE)


def perm_text(perm: int) -> str:
    """`RW-`, `R--`, ... as mqadmin prints a permission."""
    return (
        ("R" if perm & PERM_READ else "-")
        + ("W" if perm & PERM_WRITE else "-")
        + ("X" if perm & PERM_INHERIT else "-")
    )


@dataclass(slots=True)
class TopicConfig:
    """One topic on one broker: queue counts, permission, order flag."""

    topic_name: str
    read_queue_nums: int = 8
    write_queue_nums: int = 8
    perm: int = PERM_RW
    topic_filter_type: str = "SINGLE_TAG"
    topic_sys_flag: int = 0
    order: bool = False
    attributes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "topicName": self.topic_name,
            "readQueueNums": self.read_queue_nums,
            "writeQueueNums": self.write_queue_nums,
            "perm": self.perm,
            "topicFilterType": self.topic_filter_type,
            "topicSysFlag": self.topic_sys_flag,
            "order": self.order,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TopicConfig:
        """The topic a JSON object describes, as Java reads it.

        Raises:
            KeyError: no topicName.
            ValueError: a number or a boolean that is not one, a number past a Java `int`, or
                attributes that are not an object.
        """

        attributes = d.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise ValueError(f"attributes {attributes!r:.40} is not an object")
        return cls(
            topic_name=str(d["topicName"]),
            read_queue_nums=field_int(d, "readQueueNums", 8, 32),
            write_queue_nums=field_int(d, "writeQueueNums", 8, 32),
            perm=field_int(d, "perm", PERM_RW, 32),
            topic_filter_type=str(d.get("topicFilterType", "SINGLE_TAG")),
            topic_sys_flag=field_int(d, "topicSysFlag", field_int(d, "topicSynFlag", 0, 32), 32),
            order=field_bool(d, "order", False),
            attributes={str(k): str(v) for k, v in attributes.items()},
        )


@dataclass(slots=True)
class DataVersion:
    """Changes whenever a broker's topic table changes; the NameServer compares them."""

    state_version: int = 0
    timestamp: int = field(default_factory=lambda: int(time.time() * 1000))
    counter: int = 0

    def next_version(self) -> None:
        self.timestamp = int(time.time() * 1000)
        self.counter += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "stateVersion": self.state_version,
            "timestamp": self.timestamp,
            "counter": self.counter,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> DataVersion:
        d = d or {}
        return cls(
            int(d.get("stateVersion", 0)), int(d.get("timestamp", 0)), int(d.get("counter", 0))
        )
