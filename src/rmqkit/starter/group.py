"""`ListenerGroup`: every listener of one consumer group behind one consumer.

RocketMQ wants one subscription per (group, topic) across a group's members; two consumers of one
group with different tag expressions silently lose messages. So the listeners sharing
(group, topic) are merged into one subscription (`pay || refund`) and each delivered message is
routed in process by its tag; declarations that cannot be merged fail at start-up, naming both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult
from rmqkit.common.properties import Prop
from rmqkit.errors import ConfigurationError
from rmqkit.protocol.record import StoredMessage
from rmqkit.starter.invoker import ListenerInvoker
from rmqkit.starter.listener import GROUP_OPTIONS, ListenerSpec
from rmqkit.starter.outcomes import ACK, Decision

log = logging.getLogger("rmqkit.listener")


@dataclass(slots=True)
class TopicRoute:
    """The listeners of one (group, topic): by tag, plus at most one catch-all."""

    topic: str
    by_tag: dict[str, ListenerInvoker] = field(default_factory=dict)
    catch_all: ListenerInvoker | None = None
    sql: str | None = None

    def expression(self) -> tuple[str, str]:
        """The merged subscription: (expression, type)."""
        if self.sql is not None:
            return self.sql, "SQL92"
        if self.catch_all is not None or not self.by_tag:
            return "*", "TAG"
        return " || ".join(sorted(self.by_tag)), "TAG"

    def add(self, inv: ListenerInvoker) -> None:
        spec = inv.spec
        others = [*self.by_tag.values(), *([self.catch_all] if self.catch_all else [])]
        if spec.selector_sql is not None or self.sql is not None:
            if others:
                names = ", ".join(o.spec.name for o in others)
                raise ConfigurationError(
                    f"group {spec.group!r}, topic {self.topic!r}: {spec.name} cannot share the "
                    f"subscription with {names}: a SQL92 listener must be the only one of its "
                    "group on a topic (use another group)"
                )
            self.sql, self.catch_all = spec.selector_sql, inv
            return
        tags = spec.tags
        if tags is None:
            if self.catch_all is not None:
                raise ConfigurationError(
                    f"group {spec.group!r}, topic {self.topic!r}: {spec.name} and "
                    f"{self.catch_all.spec.name} both take every tag; one group routes each "
                    "message to one listener (use another group to receive it twice)"
                )
            self.catch_all = inv
            return
        for t in tags:
            if t in self.by_tag:
                raise ConfigurationError(
                    f"group {spec.group!r}, topic {self.topic!r}: tag {t!r} is claimed by both "
                    f"{spec.name} and {self.by_tag[t].spec.name}"
                )
            self.by_tag[t] = inv

    def route(self, tag: str | None) -> ListenerInvoker | None:
        if tag is not None:
            inv = self.by_tag.get(tag)
            if inv is not None:
                return inv
        return self.catch_all

    def invokers(self) -> list[ListenerInvoker]:
        seen: dict[int, ListenerInvoker] = {id(i): i for i in self.by_tag.values()}
        if self.catch_all is not None:
            seen[id(self.catch_all)] = self.catch_all
        return list(seen.values())


def check_group_options(group: str, specs: Sequence[ListenerSpec]) -> dict[str, Any]:
    """The consumer options every listener of `group` agrees on.

    Raises:
        ConfigurationError: two listeners disagree on an option of the group's consumer.
    """
    first = specs[0]
    for spec in specs[1:]:
        for name in GROUP_OPTIONS:
            a, b = getattr(first, name), getattr(spec, name)
            if a != b:
                raise ConfigurationError(
                    f"group {group!r}: {first.name} has {name}={a!r} but {spec.name} has "
                    f"{name}={b!r}; the listeners of one group share one consumer, so they must "
                    "agree (or use different groups)"
                )
    return {name: getattr(first, name) for name in GROUP_OPTIONS}


class ListenerGroup:
    """The listeners of one consumer group and the consumer handler that routes to them."""

    def __init__(self, group: str, invokers: Sequence[ListenerInvoker]) -> None:
        if not invokers:
            raise ConfigurationError(f"group {group!r} has no listeners")
        self.group = group
        self.options = check_group_options(group, [i.spec for i in invokers])
        self.batch_size = max(i.spec.batch_size for i in invokers)
        self.routes: dict[str, TopicRoute] = {}
        for inv in invokers:
            route = self.routes.setdefault(inv.spec.topic, TopicRoute(inv.spec.topic))
            route.add(inv)
        # The usual group: one listener taking every tag of one topic, one message at a time.
        only = next(iter(self.routes.values())) if len(self.routes) == 1 else None
        self._only = (
            (only.topic, only.catch_all)
            if only is not None and only.catch_all is not None and not only.by_tag
            else None
        )  # fmt: skip

    @property
    def invokers(self) -> list[ListenerInvoker]:
        return [inv for r in self.routes.values() for inv in r.invokers()]

    def subscriptions(self) -> dict[str, tuple[str, str]]:
        """topic -> (expression, type) for the group's consumer."""
        return {t: r.expression() for t, r in self.routes.items()}

    def _route(self, m: StoredMessage) -> ListenerInvoker | None:
        topic = m.properties.get(Prop.RETRY_TOPIC) or m.topic
        route = self.routes.get(topic)
        return None if route is None else route.route(m.tags)

    async def handle(self, batch: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        """The consumer's handler: route, invoke, and report per-message outcomes."""
        broker = ctx.queue.broker_name
        if len(batch) == 1:  # the common case (batch size 1): no bookkeeping
            m = batch[0]
            topic = m.properties.get(Prop.RETRY_TOPIC) or m.topic
            if self._only is not None:
                inv = self._only[1] if topic == self._only[0] else None
            else:
                route = self.routes.get(topic)
                inv = None if route is None else route.route(m.tags)
            if inv is None:
                ctx.failed = {}
            elif inv.sig.batch:
                level = (await inv.invoke_batch(batch, broker))[0].consume_level
                ctx.failed = {} if level is None else {0: level}
            else:
                d = await inv.invoke_one(m, broker)
                ctx.failed = {} if d is ACK or (level := d.consume_level) is None else {0: level}
            return ConsumeResult.SUCCESS
        decisions: list[Decision | None] = [None] * len(batch)
        by_listener: dict[int, tuple[ListenerInvoker, list[int]]] = {}
        for i, m in enumerate(batch):
            inv = self._route(m)
            if inv is None:
                log.debug("%s: no listener for %s (tag %s); acknowledged", self.group,
                          m.msg_id, m.tags)  # fmt: skip
                continue
            by_listener.setdefault(id(inv), (inv, []))[1].append(i)
        for inv, idx in by_listener.values():
            if inv.sig.batch:
                for i, d in zip(idx, await inv.invoke_batch([batch[i] for i in idx], broker),
                                strict=True):  # fmt: skip
                    decisions[i] = d
            else:
                for i in idx:
                    decisions[i] = await inv.invoke_one(batch[i], broker)
        failed = {
            i: level
            for i, d in enumerate(decisions)
            if d is not None and (level := d.consume_level) is not None
        }
        ctx.failed = failed
        return ConsumeResult.SUCCESS
