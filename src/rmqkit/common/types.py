"""Type aliases that name what a value is, so `dict[TopicName, ...]` replaces key comments."""

from __future__ import annotations

from typing import TypeAlias

TopicName: TypeAlias = str
GroupName: TypeAlias = str
BrokerName: TypeAlias = str
BrokerAddr: TypeAlias = str
QueueId: TypeAlias = int
QueueOffset: TypeAlias = int
"""A logical offset: the index of a message in its ConsumeQueue."""
PhysicalOffset: TypeAlias = int
"""A byte offset in the CommitLog."""
TimestampMs: TypeAlias = int
