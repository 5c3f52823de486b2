"""What a producer sends and what a send returns (RocketMQ `Message`, `SendResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from rmqkit.common.properties import Prop, encode_properties


@dataclass(frozen=True, slots=True)
class MessageQueue:
    """One queue of a topic on one broker."""

    topic: str
    broker_name: str
    queue_id: int


@dataclass(slots=True)
class Message:
    """A message to send.

    Args:
        topic: where it goes.
        body: the payload bytes.
        tags: one tag, used by consumers' tag filters.
        keys: business keys, searchable with a query by key.
        properties: user properties (string to string).
        flag: an int the broker stores and returns untouched.
        delay_level: 1..18 for RocketMQ's delay levels (0: none).
    """

    topic: str
    body: bytes
    tags: str | None = None
    keys: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    flag: int = 0
    delay_level: int = 0
    wait_store_ok: bool = True

    def encoded_properties(self, extra: dict[str, str] | None = None) -> str:
        """The properties string of this message, system properties first."""
        props: dict[str, str] = {}
        if self.tags:
            props[Prop.TAGS] = self.tags
        if self.keys:
            props[Prop.KEYS] = " ".join(self.keys)
        if self.delay_level:
            props[Prop.DELAY_TIME_LEVEL] = str(self.delay_level)
        if not self.wait_store_ok:
            props[Prop.WAIT_STORE_MSG_OK] = "false"
        if extra:
            props.update(extra)
        props.update(self.properties)
        return encode_properties(props)


class SendStatus(Enum):
    """How far a successful send got (RocketMQ `SendStatus`)."""

    SEND_OK = "SEND_OK"
    FLUSH_DISK_TIMEOUT = "FLUSH_DISK_TIMEOUT"
    FLUSH_SLAVE_TIMEOUT = "FLUSH_SLAVE_TIMEOUT"
    SLAVE_NOT_AVAILABLE = "SLAVE_NOT_AVAILABLE"


@dataclass(slots=True)
class SendResult:
    """The broker's answer to a send.

    `msg_id` is the client's message id (UNIQ_KEY); `offset_msg_id` is the broker's (store host
    + CommitLog offset), usable with VIEW_MESSAGE_BY_ID.
    """

    status: SendStatus
    msg_id: str
    offset_msg_id: str
    queue: MessageQueue
    queue_offset: int
    broker_addr: str = ""
