"""Message property keys and the properties string stored with every message.

RocketMQ's `MessageConst`: keys are plain strings, and a record carries them as
`key \\x01 value \\x02` repeated (a trailing `\\x02`, as Java and ali-ons write it).
"""

from __future__ import annotations

from collections.abc import Mapping

NAME_VALUE_SEPARATOR = "\x01"
PROPERTY_SEPARATOR = "\x02"
KEY_SEPARATOR = " "
"""Several KEYS are stored space-separated in one property."""


class Prop:
    """Property keys (RocketMQ `MessageConst.PROPERTY_*`)."""

    KEYS = "KEYS"
    TAGS = "TAGS"
    WAIT_STORE_MSG_OK = "WAIT"
    DELAY_TIME_LEVEL = "DELAY"
    RETRY_TOPIC = "RETRY_TOPIC"
    REAL_TOPIC = "REAL_TOPIC"
    REAL_QUEUE_ID = "REAL_QID"
    TRANSACTION_PREPARED = "TRAN_MSG"
    PRODUCER_GROUP = "PGROUP"
    MIN_OFFSET = "MIN_OFFSET"
    MAX_OFFSET = "MAX_OFFSET"
    BUYER_ID = "BUYER_ID"
    ORIGIN_MESSAGE_ID = "ORIGIN_MESSAGE_ID"
    TRANSFER_FLAG = "TRANSFER_FLAG"
    CORRECTION_FLAG = "CORRECTION_FLAG"
    MQ2_FLAG = "MQ2_FLAG"
    RECONSUME_TIME = "RECONSUME_TIME"
    MSG_REGION = "MSG_REGION"
    TRACE_SWITCH = "TRACE_ON"
    UNIQ_CLIENT_MESSAGE_ID_KEYIDX = "UNIQ_KEY"
    MAX_RECONSUME_TIMES = "MAX_RECONSUME_TIMES"
    CONSUME_START_TIMESTAMP = "CONSUME_START_TIME"
    TRANSACTION_PREPARED_QUEUE_OFFSET = "TRAN_PREPARED_QUEUE_OFFSET"
    TRANSACTION_CHECK_TIMES = "TRANSACTION_CHECK_TIMES"
    CHECK_IMMUNITY_TIME_IN_SECONDS = "CHECK_IMMUNITY_TIME_IN_SECONDS"
    INSTANCE_ID = "INSTANCE_ID"
    CORRELATION_ID = "CORRELATION_ID"
    MESSAGE_REPLY_TO_CLIENT = "REPLY_TO_CLIENT"
    MESSAGE_TTL = "TTL"
    REPLY_MESSAGE_ARRIVE_TIME = "ARRIVE_TIME"
    PUSH_REPLY_TIME = "PUSH_REPLY_TIME"
    CLUSTER = "CLUSTER"
    MESSAGE_TYPE = "MSG_TYPE"
    SHARDING_KEY = "__SHARDINGKEY"
    TRANSACTION_ID = "__transactionId__"
    TIMER_DELIVER_MS = "TIMER_DELIVER_MS"
    TIMER_DELAY_SEC = "TIMER_DELAY_SEC"
    TIMER_DELAY_MS = "TIMER_DELAY_MS"
    INNER_NUM = "INNER_NUM"
    INNER_BASE = "INNER_BASE"
    DLQ_ORIGIN_TOPIC = "DLQ_ORIGIN_TOPIC"
    DLQ_ORIGIN_MESSAGE_ID = "DLQ_ORIGIN_MESSAGE_ID"


SYSTEM_KEYS = frozenset(
    v for k, v in vars(Prop).items() if not k.startswith("_") and isinstance(v, str)
)
"""Every key of `Prop`: RocketMQ's own properties, as against those a sender sets."""

REPLY_MESSAGE_FLAG = "reply"
"""The MSG_TYPE of a reply (RocketMQ `MixAll.REPLY_MESSAGE_FLAG`): such a message is sent with
SEND_REPLY_MESSAGE(_V2) and pushed by the broker to the client named in REPLY_TO_CLIENT."""
REPLY_TOPIC_SUFFIX = "_REPLY_TOPIC"


def reply_topic(cluster: str) -> str:
    """`<cluster>_REPLY_TOPIC`: every broker of a cluster has it, replies are sent to it."""
    return cluster + REPLY_TOPIC_SUFFIX


def encode_properties(props: Mapping[str, str]) -> str:
    """The properties string of a record: `k\\x01v\\x02` for each entry, in insertion order."""
    if not props:
        return ""
    return "".join(f"{k}{NAME_VALUE_SEPARATOR}{v}{PROPERTY_SEPARATOR}" for k, v in props.items())


def decode_properties(text: str) -> dict[str, str]:
    """Parse a properties string; entries without a separator or with an empty key are skipped.

    Lenient by design: records written by other clients sometimes lack the trailing separator
    or carry empty entries, and a reader must never fail on them.
    """
    out: dict[str, str] = {}
    if not text:
        return out
    for item in text.split(PROPERTY_SEPARATOR):
        key, sep, value = item.partition(NAME_VALUE_SEPARATOR)
        if sep and key:
            out[key] = value
    return out


def find_property(text: str, key: str) -> str | None:
    """One property's value without building a dict (used on the dispatch hot path)."""
    needle = key + NAME_VALUE_SEPARATOR
    i = text.find(needle)
    while i > 0 and text[i - 1] != PROPERTY_SEPARATOR:  # inside another key or a value
        i = text.find(needle, i + 1)
    if i < 0:
        return None
    j = i + len(needle)
    end = text.find(PROPERTY_SEPARATOR, j)
    return text[j:] if end < 0 else text[j:end]


def split_keys(keys: str) -> list[str]:
    """The tokens of a KEYS property (space-separated, empties dropped)."""
    return [k for k in keys.split(KEY_SEPARATOR) if k]
