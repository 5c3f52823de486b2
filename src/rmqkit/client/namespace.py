"""Namespaces: resource names of one tenant kept apart on a shared cluster (RocketMQ
`NamespaceUtil`).

A client with a namespace sends to `<namespace>%<topic>`, consumes as `<namespace>%<group>`, and
shows its user the names without the prefix. Retry and dead-letter topics keep their prefix in
front: `%RETRY%<namespace>%<group>`, `%DLQ%<namespace>%<group>`. System topics (TBW102,
SCHEDULE_TOPIC_XXXX, `rmq_sys_*`, ...) and system groups (`CID_RMQ_SYS_*`) are never wrapped.
"""

from __future__ import annotations

from rmqkit.client.message import MessageQueue
from rmqkit.common.names import DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX

NAMESPACE_SEPARATOR = "%"
SYSTEM_TOPIC_PREFIX = "rmq_sys_"
SYSTEM_GROUP_PREFIX = "CID_RMQ_SYS_"
SYSTEM_TOPICS = frozenset(
    {
        "TBW102",
        "SCHEDULE_TOPIC_XXXX",
        "BenchmarkTest",
        "RMQ_SYS_TRANS_HALF_TOPIC",
        "RMQ_SYS_TRACE_TOPIC",
        "RMQ_SYS_TRANS_OP_HALF_TOPIC",
        "TRANS_CHECK_MAX_TIME_TOPIC",
        "SELF_TEST_TOPIC",
        "OFFSET_MOVED_EVENT",
        "CHECKPOINT_TOPIC",
    }
)
"""RocketMQ's `TopicValidator` system topics: left as they are in every namespace."""


def is_system_resource(resource: str) -> bool:
    """A system topic or group, which no namespace applies to."""
    return (
        resource in SYSTEM_TOPICS
        or resource.startswith(SYSTEM_TOPIC_PREFIX)
        or resource.startswith(SYSTEM_GROUP_PREFIX)
    )


def _split_prefix(resource: str) -> tuple[str, str]:
    """`%RETRY%` or `%DLQ%` (or nothing), and the rest."""
    for prefix in (RETRY_GROUP_TOPIC_PREFIX, DLQ_GROUP_TOPIC_PREFIX):
        if resource.startswith(prefix):
            return prefix, resource[len(prefix) :]
    return "", resource


def is_already_with_namespace(resource: str, namespace: str) -> bool:
    """True when `resource` (past any retry/DLQ prefix) already starts with `<namespace>%`."""
    if not namespace or not resource or is_system_resource(resource):
        return False
    return _split_prefix(resource)[1].startswith(namespace + NAMESPACE_SEPARATOR)


def wrap(namespace: str, resource: str) -> str:
    """`resource` inside `namespace`: `ns%topic`, `%RETRY%ns%group`; unchanged without a
    namespace, for system resources and when already wrapped."""
    if not namespace or not resource:
        return resource
    if is_system_resource(resource) or is_already_with_namespace(resource, namespace):
        return resource
    prefix, bare = _split_prefix(resource)
    return f"{prefix}{namespace}{NAMESPACE_SEPARATOR}{bare}"


def unwrap(resource: str, namespace: str | None = None) -> str:
    """`resource` without its namespace: `ns%topic` -> `topic`, `%RETRY%ns%g` -> `%RETRY%g`.

    With `namespace`, only that namespace is taken off; a name in another one stays whole.
    """
    if not resource:
        return resource
    if namespace is not None:
        if not namespace:
            return resource
        if not _split_prefix(resource)[1].startswith(namespace + NAMESPACE_SEPARATOR):
            return resource
    if is_system_resource(resource):
        return resource
    prefix, bare = _split_prefix(resource)
    index = bare.find(NAMESPACE_SEPARATOR)
    if index > 0:
        return prefix + bare[index + 1 :]
    return resource


def namespace_of(resource: str) -> str:
    """The namespace a resource name carries ("" for none)."""
    if not resource or is_system_resource(resource):
        return ""
    bare = _split_prefix(resource)[1]
    index = bare.find(NAMESPACE_SEPARATOR)
    return bare[:index] if index > 0 else ""


def retry_topic_of(namespace: str, group: str) -> str:
    """`%RETRY%<namespace>%<group>` (RocketMQ's `wrapNamespaceAndRetry`)."""
    return RETRY_GROUP_TOPIC_PREFIX + wrap(namespace, group)


def wrap_queue(namespace: str, mq: MessageQueue) -> MessageQueue:
    """The queue with its topic wrapped (the same object when nothing changes)."""
    topic = wrap(namespace, mq.topic)
    return mq if topic == mq.topic else MessageQueue(topic, mq.broker_name, mq.queue_id)


def unwrap_queue(namespace: str, mq: MessageQueue) -> MessageQueue:
    """The queue with its topic unwrapped (the same object when nothing changes)."""
    topic = unwrap(mq.topic, namespace)
    return mq if topic == mq.topic else MessageQueue(topic, mq.broker_name, mq.queue_id)
