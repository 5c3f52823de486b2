"""Does a listener group subscribe as the group's members already running elsewhere do?

RocketMQ rebalances a consumer group's queues over all its members, whatever each subscribes
to. Two processes of one group with different subscriptions therefore lose messages: a member
given a queue drops what it did not subscribe to, and the member that wanted it never gets the
queue. The broker knows the subscriptions of the running members (from their heartbeats;
GET_CONSUMER_CONNECTION_LIST shows them), so before a group's consumer starts, the app compares
its own with them (`rocketmq.consumer.subscription-check`: fail, warn or off).

Compared: the message model and, for CLUSTERING groups, each topic's expression (tag sets as
sets, so `a || b` equals `b||a`; SQL92 with blanks collapsed). The `%RETRY%` topics consumers add
themselves are not. BROADCASTING members read every queue, so their subscriptions may differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rmqkit.common.names import RETRY_GROUP_TOPIC_PREFIX

MAX_IDS_SHOWN = 3


@dataclass(frozen=True, slots=True)
class GroupView:
    """What the broker says about a consumer group's running members."""

    client_ids: tuple[str, ...]
    message_model: str
    subscriptions: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Topic (without the namespace) -> (expression, expression type)."""


def _normal(expression: str, kind: str) -> tuple[str, object]:
    kind = (kind or "TAG").upper()
    if kind == "TAG":
        tags = frozenset(t.strip() for t in expression.split("||") if t.strip())
        return kind, (frozenset({"*"}) if not tags or "*" in tags else tags)
    return kind, " ".join(expression.split())


def _show(sub: tuple[str, str] | None) -> str:
    if sub is None:
        return "nothing"
    expression, kind = sub
    return repr(expression) if (kind or "TAG").upper() == "TAG" else f"{kind} {expression!r}"


def differences(
    ours: Mapping[str, tuple[str, str]], message_model: str, running: GroupView
) -> list[str]:
    """How this process's subscription of a group differs from its running members' (empty:
    it does not)."""
    out: list[str] = []
    if message_model != running.message_model:
        out.append(f"message model: here {message_model}, there {running.message_model}")
    elif message_model == "BROADCASTING":
        return out  # every member reads every queue: different subscriptions lose nothing
    theirs = {
        t: s for t, s in running.subscriptions.items() if not t.startswith(RETRY_GROUP_TOPIC_PREFIX)
    }
    for topic in sorted(set(ours) | set(theirs)):
        a, b = ours.get(topic), theirs.get(topic)
        if a is None or b is None or _normal(*a) != _normal(*b):
            out.append(f"topic {topic}: here {_show(a)}, there {_show(b)}")
    return out


def describe(group: str, diffs: list[str], running: GroupView) -> str:
    """The message for a group whose subscription differs from its running members'."""
    ids = ", ".join(running.client_ids[:MAX_IDS_SHOWN])
    if len(running.client_ids) > MAX_IDS_SHOWN:
        ids += f" and {len(running.client_ids) - MAX_IDS_SHOWN} more"
    return (
        f"listener group {group!r} subscribes differently from its members already running"
        f" ({ids}): {'; '.join(diffs)}. The members of one consumer group share its queues, so"
        " they must subscribe alike, or each drops messages another wants. Give these listeners"
        " their own group, or change every member together (while a rolling change is under"
        " way, rocketmq.consumer.subscription-check=warn lets them start)"
    )
