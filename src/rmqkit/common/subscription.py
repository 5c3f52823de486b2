"""Subscriptions: a consumer group's interest in a topic, by tag expression (or SQL92).

RocketMQ's `SubscriptionData` and `FilterAPI.build`: `*` (or empty) means every message;
`TagA || TagB` means those tags, matched on the broker by their hash codes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rmqkit.common.hashing import tags_code

SUB_ALL = "*"
EXPRESSION_TAG = "TAG"
EXPRESSION_SQL92 = "SQL92"


def parse_tags(expression: str | None) -> frozenset[str] | None:
    """The tags of `TagA || TagB`; None for `*` or an empty expression (everything)."""
    if expression is None:
        return None
    expr = expression.strip()
    if not expr or expr == SUB_ALL:
        return None
    tags = frozenset(t.strip() for t in expr.split("||") if t.strip())
    return tags or None


@dataclass(slots=True)
class SubscriptionData:
    """One topic of a consumer group's subscription."""

    topic: str
    sub_string: str = SUB_ALL
    expression_type: str = EXPRESSION_TAG
    sub_version: int = field(default_factory=lambda: int(time.time() * 1000))
    tags: frozenset[str] | None = None
    """None: every message."""
    codes: frozenset[int] | None = None

    @classmethod
    def build(
        cls, topic: str, expression: str | None, expression_type: str = EXPRESSION_TAG
    ) -> SubscriptionData:
        expr = (expression or SUB_ALL).strip() or SUB_ALL
        etype = (expression_type or EXPRESSION_TAG).upper()
        if etype != EXPRESSION_TAG:
            return cls(topic, expr, etype)
        tags = parse_tags(expr)
        codes = None if tags is None else frozenset(tags_code(t) for t in tags)
        return cls(topic, SUB_ALL if tags is None else expr, etype, tags=tags, codes=codes)

    def matches_tag(self, tag: str | None) -> bool:
        """The client-side check: the tag string itself (hash codes can collide)."""
        return self.tags is None or (tag is not None and tag in self.tags)
