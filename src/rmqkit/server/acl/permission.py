"""Plain ACL permissions: the bits, their spelling in plain_acl.yml, and what each request needs.

A resource is a topic, or a consumer group spelled as its retry topic (`%RETRY%<group>`), as
RocketMQ keeps them. The bits and the check are RocketMQ's `Permission`:

    DENY = 1   ANY = 2   PUB = 4   SUB = 8          "PUB|SUB" = 12; anything else reads as DENY

    an owned DENY refuses; a needed ANY is met by PUB or SUB; otherwise a needed bit must be owned
"""

from __future__ import annotations

from rmqkit.common.names import RETRY_GROUP_TOPIC_PREFIX, TRACE_TOPIC, retry_topic
from rmqkit.protocol.codes import RequestCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.heartbeat import HeartbeatError, decode_heartbeat

DENY = 1
ANY = 2
PUB = 4
SUB = 8

_SPELLINGS = {"PUB": PUB, "SUB": SUB, "PUB|SUB": PUB | SUB, "SUB|PUB": PUB | SUB, "DENY": DENY}

ADMIN_CODES = frozenset({
    RequestCode.UPDATE_AND_CREATE_TOPIC,
    RequestCode.UPDATE_BROKER_CONFIG,
    RequestCode.DELETE_TOPIC_IN_BROKER,
    RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
    RequestCode.DELETE_SUBSCRIPTIONGROUP,
})  # fmt: skip
"""Requests only an account with `admin: true` may make."""

Resources = dict[str, int]
"""Resource name -> the permission bits a request needs on it."""


def parse_perm(text: str | None) -> int:
    """`PUB`, `SUB`, `PUB|SUB` or `DENY` to bits; anything else (or nothing) is DENY."""
    return _SPELLINGS.get((text or "").strip(), DENY)


def is_known_perm(text: str) -> bool:
    """True for the spellings `parse_perm` reads as themselves (the loader warns otherwise)."""
    return text.strip() in _SPELLINGS


def check_permission(needed: int, owned: int) -> bool:
    """RocketMQ's `Permission.checkPermission`."""
    if owned & DENY:
        return False
    if needed & ANY:
        return bool(owned & (PUB | SUB))
    return bool(needed & owned)


def is_group(resource: str) -> bool:
    return resource.startswith(RETRY_GROUP_TOPIC_PREFIX)


def describe(resource: str) -> str:
    """`group:<name>` or `topic:<name>`, as RocketMQ's messages name a resource."""
    if is_group(resource):
        return "group:" + resource.removeprefix(RETRY_GROUP_TOPIC_PREFIX)
    return "topic:" + resource


def _send(resources: Resources, topic: str | None) -> None:
    if topic is None:
        return
    # A send to a group's retry topic is the group's business: it needs SUB on that group.
    # (RocketMQ derives the group from the producer group header here; the retry topic itself
    # names the group the message belongs to.)
    resources[topic] = SUB if is_group(topic) else PUB


def _sub(resources: Resources, *names: str | None) -> None:
    for name in names:
        if name is not None:
            resources[name] = SUB


def _group(name: str | None) -> str | None:
    return None if name is None else retry_topic(name)


def needed_resources(cmd: RemotingCommand) -> Resources:
    """What `cmd` needs on which topics and groups (RocketMQ's `PlainAccessResource.parse`).

    Requests not listed need no resource, only a valid signature (and admin codes an admin).
    """
    ext = cmd.ext_fields
    code = cmd.code
    out: Resources = {}
    if code == RequestCode.SEND_MESSAGE:
        _send(out, ext.get("topic"))
    elif code in (RequestCode.SEND_MESSAGE_V2, RequestCode.SEND_BATCH_MESSAGE):
        _send(out, ext.get("b"))
    elif code == RequestCode.CONSUMER_SEND_MSG_BACK:
        _sub(out, _group(ext.get("group")))
    elif code in (RequestCode.PULL_MESSAGE, RequestCode.LITE_PULL_MESSAGE):
        _sub(out, ext.get("topic"), _group(ext.get("consumerGroup")))
    elif code == RequestCode.QUERY_MESSAGE:
        _sub(out, ext.get("topic"))
    elif code == RequestCode.HEART_BEAT:
        try:
            heartbeat = decode_heartbeat(cmd.body)
        except HeartbeatError:
            return out  # the heartbeat processor answers a bad body
        for consumer in heartbeat.consumers:
            _sub(out, _group(consumer.group), *(s.topic for s in consumer.subscriptions))
    elif code in (RequestCode.UNREGISTER_CLIENT, RequestCode.GET_CONSUMER_LIST_BY_GROUP):
        _sub(out, _group(ext.get("consumerGroup")))
    elif code in (RequestCode.UPDATE_CONSUMER_OFFSET, RequestCode.QUERY_CONSUMER_OFFSET):
        # RocketMQ checks only the update; reading a group's offsets is its business too.
        _sub(out, _group(ext.get("consumerGroup")), ext.get("topic"))
    return out


def is_trace_write(resources: Resources) -> bool:
    """A write to the message trace topic: any signed client may make it."""
    return bool(resources.get(TRACE_TOPIC, 0) & PUB)
