"""The attribute and metric names rmqkit spells out match the OpenTelemetry semantic-conventions
package (a test-only dependency, via opentelemetry-sdk), and `error_type` stays low-cardinality."""

from __future__ import annotations

import pytest
from opentelemetry.semconv._incubating.attributes import messaging_attributes as ma
from opentelemetry.semconv._incubating.metrics import messaging_metrics as mm
from opentelemetry.semconv.attributes import error_attributes as ea

from rmqkit.errors import FlushDiskTimeoutError, RemotingTimeoutError
from rmqkit.starter.observability import error_type
from rmqkit.starter.observability import semconv as sc


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (sc.MESSAGING_SYSTEM, ma.MESSAGING_SYSTEM),
        (sc.DESTINATION_NAME, ma.MESSAGING_DESTINATION_NAME),
        (sc.DESTINATION_PARTITION_ID, ma.MESSAGING_DESTINATION_PARTITION_ID),
        (sc.OPERATION_TYPE, ma.MESSAGING_OPERATION_TYPE),
        (sc.OPERATION_NAME, ma.MESSAGING_OPERATION_NAME),
        (sc.MESSAGE_ID, ma.MESSAGING_MESSAGE_ID),
        (sc.MESSAGE_BODY_SIZE, ma.MESSAGING_MESSAGE_BODY_SIZE),
        (sc.BATCH_MESSAGE_COUNT, ma.MESSAGING_BATCH_MESSAGE_COUNT),
        (sc.CONSUMER_GROUP_NAME, ma.MESSAGING_CONSUMER_GROUP_NAME),
        (sc.CLIENT_ID, ma.MESSAGING_CLIENT_ID),
        (sc.ERROR_TYPE, ea.ERROR_TYPE),
        (sc.ROCKETMQ_NAMESPACE, ma.MESSAGING_ROCKETMQ_NAMESPACE),
        (sc.ROCKETMQ_CLIENT_GROUP, ma.MESSAGING_ROCKETMQ_CLIENT_GROUP),
        (sc.ROCKETMQ_MESSAGE_TAG, ma.MESSAGING_ROCKETMQ_MESSAGE_TAG),
        (sc.ROCKETMQ_MESSAGE_KEYS, ma.MESSAGING_ROCKETMQ_MESSAGE_KEYS),
        (sc.ROCKETMQ_MESSAGE_TYPE, ma.MESSAGING_ROCKETMQ_MESSAGE_TYPE),
        (sc.ROCKETMQ_MESSAGE_GROUP, ma.MESSAGING_ROCKETMQ_MESSAGE_GROUP),
        (sc.ROCKETMQ_DELAY_TIME_LEVEL, ma.MESSAGING_ROCKETMQ_MESSAGE_DELAY_TIME_LEVEL),
        (sc.ROCKETMQ_DELIVERY_TIMESTAMP, ma.MESSAGING_ROCKETMQ_MESSAGE_DELIVERY_TIMESTAMP),
        (sc.ROCKETMQ_CONSUMPTION_MODEL, ma.MESSAGING_ROCKETMQ_CONSUMPTION_MODEL),
        (sc.SYSTEM, ma.MessagingSystemValues.ROCKETMQ.value),
        (sc.OP_SEND, ma.MessagingOperationTypeValues.SEND.value),
        (sc.OP_RECEIVE, ma.MessagingOperationTypeValues.RECEIVE.value),
        (sc.OP_PROCESS, ma.MessagingOperationTypeValues.PROCESS.value),
        (sc.METRIC_SENT_MESSAGES, mm.MESSAGING_CLIENT_SENT_MESSAGES),
        (sc.METRIC_CONSUMED_MESSAGES, mm.MESSAGING_CLIENT_CONSUMED_MESSAGES),
        (sc.METRIC_OPERATION_DURATION, mm.MESSAGING_CLIENT_OPERATION_DURATION),
        (sc.METRIC_PROCESS_DURATION, mm.MESSAGING_PROCESS_DURATION),
    ],
)
def test_names_match_the_semantic_conventions(ours: str, theirs: str) -> None:
    assert ours == theirs


def test_message_type_values_match_the_conventions() -> None:
    values = {v.value for v in ma.MessagingRocketmqMessageTypeValues}
    assert values == {"normal", "fifo", "delay", "transaction"}


class _Custom(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (None, "_OTHER"),
        ("", "_OTHER"),
        ("SEND_TIMEOUT", "SEND_TIMEOUT"),
        (ValueError("x"), "ValueError"),
        (FlushDiskTimeoutError("slow disk"), "FLUSH_DISK_TIMEOUT"),
        (RemotingTimeoutError("no reply"), "rmqkit.errors.RemotingTimeoutError"),
        (_Custom(), f"{__name__}._Custom"),
    ],
)
def test_error_type(error: BaseException | str | None, expected: str) -> None:
    assert error_type(error) == expected
