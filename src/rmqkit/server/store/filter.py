"""Message filters applied while reading a ConsumeQueue (RocketMQ `MessageFilter`)."""

from __future__ import annotations

from typing import Protocol


class MessageFilter(Protocol):
    """Decides, first from the ConsumeQueue entry, then from the record, whether to deliver."""

    def matches_tags_code(self, tags_code: int) -> bool: ...

    def matches_record(self, record: memoryview) -> bool: ...


class TagFilter:
    """Matches tag hash codes (`TagA || TagB`); `None` codes mean every message (`*`).

    The broker filters by hash only, as RocketMQ does; clients re-check the tag string, since two
    tags can share a hash.
    """

    __slots__ = ("codes",)

    def __init__(self, codes: frozenset[int] | None) -> None:
        self.codes = codes

    def matches_tags_code(self, tags_code: int) -> bool:
        return self.codes is None or tags_code in self.codes

    def matches_record(self, record: memoryview) -> bool:
        return True
