"""OpenTelemetry semantic-convention names for RocketMQ messaging spans and metrics.

Names follow the messaging conventions (`messaging.*`) and their RocketMQ page
(`messaging.rocketmq.*`); they are spelled out here so `src/` needs only `opentelemetry-api`.
Names rmqkit adds itself (no convention exists for them) start with `rmqkit.`.
"""

from __future__ import annotations

import functools
import importlib.metadata
from typing import Final, Literal, TypeAlias

from rmqkit.errors import BrokerResponseError

MessageType: TypeAlias = Literal["normal", "fifo", "delay", "transaction"]
"""`messaging.rocketmq.message.type` values."""

ConsumptionModel: TypeAlias = Literal["clustering", "broadcasting"]
"""`messaging.rocketmq.consumption_model` values (RocketMQ's `MessageModel`)."""

SYSTEM: Final = "rocketmq"
INSTRUMENTATION_NAME: Final = "rmqkit"

# -- common messaging attributes
MESSAGING_SYSTEM: Final = "messaging.system"
DESTINATION_NAME: Final = "messaging.destination.name"
DESTINATION_PARTITION_ID: Final = "messaging.destination.partition.id"
OPERATION_TYPE: Final = "messaging.operation.type"
OPERATION_NAME: Final = "messaging.operation.name"
MESSAGE_ID: Final = "messaging.message.id"
MESSAGE_BODY_SIZE: Final = "messaging.message.body.size"
BATCH_MESSAGE_COUNT: Final = "messaging.batch.message_count"
CONSUMER_GROUP_NAME: Final = "messaging.consumer.group.name"
CLIENT_ID: Final = "messaging.client.id"
ERROR_TYPE: Final = "error.type"

# -- RocketMQ attributes
ROCKETMQ_NAMESPACE: Final = "messaging.rocketmq.namespace"
ROCKETMQ_CLIENT_GROUP: Final = "messaging.rocketmq.client_group"
"""Deprecated for consumers (use `messaging.consumer.group.name`); still the only name for the
producer group, so rmqkit sets it on send spans only."""
ROCKETMQ_MESSAGE_TAG: Final = "messaging.rocketmq.message.tag"
ROCKETMQ_MESSAGE_KEYS: Final = "messaging.rocketmq.message.keys"
ROCKETMQ_MESSAGE_TYPE: Final = "messaging.rocketmq.message.type"
ROCKETMQ_MESSAGE_GROUP: Final = "messaging.rocketmq.message.group"
ROCKETMQ_DELAY_TIME_LEVEL: Final = "messaging.rocketmq.message.delay_time_level"
ROCKETMQ_DELIVERY_TIMESTAMP: Final = "messaging.rocketmq.message.delivery_timestamp"
"""Milliseconds since the epoch at which a delay message becomes visible."""
ROCKETMQ_CONSUMPTION_MODEL: Final = "messaging.rocketmq.consumption_model"

# -- rmqkit's own attributes (no convention covers them)
RMQKIT_RECONSUME_TIMES: Final = "rmqkit.message.reconsume_times"
RMQKIT_OUTCOME: Final = "rmqkit.consume.outcome"

# -- operation types and names
OP_SEND: Final = "send"
OP_RECEIVE: Final = "receive"
OP_PROCESS: Final = "process"

# -- metric names
METRIC_SENT_MESSAGES: Final = "messaging.client.sent.messages"
METRIC_CONSUMED_MESSAGES: Final = "messaging.client.consumed.messages"
METRIC_OPERATION_DURATION: Final = "messaging.client.operation.duration"
METRIC_PROCESS_DURATION: Final = "messaging.process.duration"
METRIC_CONSUMER_FAILED: Final = "rmqkit.consumer.failed"
METRIC_CONSUMER_RETRIED: Final = "rmqkit.consumer.retried"
METRIC_CONSUMER_DEAD_LETTERED: Final = "rmqkit.consumer.dead_lettered"
METRIC_CONSUMER_DUPLICATES: Final = "rmqkit.consumer.duplicates"
METRIC_CONSUMER_LAG: Final = "rmqkit.consumer.lag"


@functools.cache
def instrumentation_version() -> str:
    """rmqkit's installed version, the version of the `rmqkit` tracer and meter."""
    try:
        return importlib.metadata.version("rmqkit")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


ERROR_TYPE_OTHER: Final = "_OTHER"
"""The conventions' fallback `error.type` when nothing better is known."""


def error_type(error: BaseException | str | None) -> str:
    """The low-cardinality `error.type` value for a failure.

    A broker refusal is named by its response code (`TOPIC_NOT_EXIST`, `SYSTEM_BUSY`), as the
    RocketMQ conventions' examples do; any other exception by its class's qualified name
    (`builtins` left out); a string is taken as already being an error type.

    Args:
        error: the exception raised, an error type string, or None (unknown failure).

    Returns:
        The value for the `error.type` attribute.
    """
    if error is None:
        return ERROR_TYPE_OTHER
    if isinstance(error, str):
        return error or ERROR_TYPE_OTHER
    if isinstance(error, BrokerResponseError):
        return error.code.name
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"
