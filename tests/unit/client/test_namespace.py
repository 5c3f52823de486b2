"""Namespace wrapping and unwrapping, as RocketMQ's `NamespaceUtil` does it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmqkit.client.instance import ClientConfig
from rmqkit.client.message import MessageQueue
from rmqkit.client.namespace import (
    is_already_with_namespace,
    namespace_of,
    retry_topic_of,
    unwrap,
    unwrap_queue,
    wrap,
    wrap_queue,
)

NS = "MQ_INST_XXX"


@pytest.mark.parametrize(
    ("bare", "wrapped"),
    [
        ("TOPIC_XXX", "MQ_INST_XXX%TOPIC_XXX"),
        ("GID_XXX", "MQ_INST_XXX%GID_XXX"),
        ("%RETRY%GID_XXX", "%RETRY%MQ_INST_XXX%GID_XXX"),
        ("%DLQ%GID_XXX", "%DLQ%MQ_INST_XXX%GID_XXX"),
    ],
)
def test_wrap_and_unwrap(bare: str, wrapped: str) -> None:
    assert wrap(NS, bare) == wrapped
    assert wrap(NS, wrapped) == wrapped  # never twice
    assert unwrap(wrapped, NS) == bare
    assert unwrap(wrapped) == bare
    assert namespace_of(wrapped) == NS
    assert namespace_of(bare) == ""


def test_unwrap_leaves_another_namespace_alone() -> None:
    assert unwrap("%RETRY%MQ_INST_XXX%GID", "MQ_INST_XXX1") == "%RETRY%MQ_INST_XXX%GID"
    assert unwrap("MQ_INST_XXX%T", "") == "MQ_INST_XXX%T"


@pytest.mark.parametrize(
    "system", ["rmq_sys_topic", "TBW102", "SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC",
               "CID_RMQ_SYS_TRANS"],
)  # fmt: skip
def test_system_resources_are_never_wrapped(system: str) -> None:
    assert wrap(NS, system) == system
    assert unwrap(system) == system
    assert not is_already_with_namespace(system, NS)
    assert namespace_of(system) == ""


def test_no_namespace_changes_nothing() -> None:
    assert wrap("", "T") == "T"
    assert wrap(NS, "") == ""
    assert unwrap("T") == "T"  # no separator
    assert unwrap("%T") == "%T"  # a separator first is not a namespace


def test_retry_topic_and_queues() -> None:
    assert retry_topic_of(NS, "g") == "%RETRY%MQ_INST_XXX%g"
    assert retry_topic_of("", "g") == "%RETRY%g"
    mq = MessageQueue("T", "b", 1)
    assert wrap_queue(NS, mq) == MessageQueue("MQ_INST_XXX%T", "b", 1)
    assert unwrap_queue(NS, wrap_queue(NS, mq)) == mq
    assert wrap_queue("", mq) is mq


def test_client_config_wraps_with_its_namespace() -> None:
    cfg = ClientConfig("127.0.0.1:9876", namespace="tenant-a")
    assert cfg.with_namespace("orders") == "tenant-a%orders"
    assert cfg.without_namespace("tenant-a%orders") == "orders"
    assert cfg.without_namespace("tenant-b%orders") == "tenant-b%orders"
    assert ClientConfig("127.0.0.1:9876").with_namespace("orders") == "orders"


@given(
    ns=st.text("abcXYZ_-0123", min_size=1, max_size=8),
    name=st.text("abcXYZ_-0123", min_size=1, max_size=12),
    prefix=st.sampled_from(["", "%RETRY%", "%DLQ%"]),
)
def test_round_trip(ns: str, name: str, prefix: str) -> None:
    resource = prefix + name
    if name.startswith(("rmq_sys_", "CID_RMQ_SYS_")) or name == "TBW102":
        return
    assert unwrap(wrap(ns, resource), ns) == resource
