"""Names RocketMQ reserves or refuses: system topics, group topic prefixes, topic name rules."""

from __future__ import annotations

import re

DEFAULT_TOPIC = "TBW102"
"""The template topic the producer falls back to when auto-creating a topic."""
SCHEDULE_TOPIC = "SCHEDULE_TOPIC_XXXX"
TRANS_HALF_TOPIC = "RMQ_SYS_TRANS_HALF_TOPIC"
TRANS_OP_HALF_TOPIC = "RMQ_SYS_TRANS_OP_HALF_TOPIC"
TRACE_TOPIC = "RMQ_SYS_TRACE_TOPIC"
SELF_TEST_TOPIC = "SELF_TEST_TOPIC"
RETRY_GROUP_TOPIC_PREFIX = "%RETRY%"
DLQ_GROUP_TOPIC_PREFIX = "%DLQ%"

TOPIC_MAX_LENGTH = 127
"""V1 records store the topic length in one signed byte."""
_TOPIC_RE = re.compile(r"^[%|a-zA-Z0-9_-]+$")

TOOLS_CONSUMER_GROUP = "TOOLS_CONSUMER"
"""The group RocketMQ's admin tools read messages as (`MixAll.TOOLS_CONSUMER_GROUP`)."""

SYSTEM_GROUPS = frozenset({
    TOOLS_CONSUMER_GROUP, "FILTERSRV_CONSUMER", "__MONITOR_CONSUMER", "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY", "CID_ONSAPI_PULL", "CID_ONSAPI_PERMISSION", "CID_ONSAPI_OWNER",
})  # fmt: skip
"""Consumer groups RocketMQ's brokers and tools use themselves (`MixAll`)."""


def is_system_group(group: str) -> bool:
    """A group of RocketMQ's own, not an application's (`MixAll.isSysConsumerGroup` and the
    groups a Java broker creates at start)."""
    return group in SYSTEM_GROUPS or group.startswith("CID_RMQ_SYS_")


def retry_topic(group: str) -> str:
    """`%RETRY%<group>`: where a clustering group's failed messages wait for redelivery."""
    return RETRY_GROUP_TOPIC_PREFIX + group


def dlq_topic(group: str) -> str:
    """`%DLQ%<group>`: where a group's messages go after the last retry."""
    return DLQ_GROUP_TOPIC_PREFIX + group


def topic_problem(topic: str) -> str | None:
    """Why a topic name is refused, or None when it is allowed (RocketMQ's `TopicValidator`)."""
    if not topic:
        return "the topic name is empty"
    if not topic.isascii() or not _TOPIC_RE.match(topic):
        return (
            f"the topic name {topic!r} has illegal characters; "
            "allowed are letters, digits, '%', '|', '_' and '-'"
        )
    if len(topic) > TOPIC_MAX_LENGTH:
        return f"the topic name is {len(topic)} characters; at most {TOPIC_MAX_LENGTH} are allowed"
    return None
