"""What a producer sends and what a send returns (RocketMQ `Message`, `SendResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from rmqkit.common.properties import (
    NAME_VALUE_SEPARATOR,
    PROPERTY_SEPARATOR,
    Prop,
    encode_properties,
)


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
        """The properties string of this message, system properties first.

        `extra` (the UNIQ_KEY a send adds) comes after the system properties; a user property
        of the same name replaces a system or extra one in its place.
        """
        if self.properties or (extra and not _SYSTEM_KEYS.isdisjoint(extra)):
            return encode_properties(self._property_dict(extra))
        # No name can repeat: the string is built directly, without the dict (hot path).
        out = f"{_TAGS}{self.tags}{_SEP}" if self.tags else ""
        if self.keys:
            out += f"{_KEYS}{' '.join(self.keys)}{_SEP}"
        if self.delay_level:
            out += f"{_DELAY}{self.delay_level}{_SEP}"
        if not self.wait_store_ok:
            out += f"{_WAIT}false{_SEP}"
        if extra:
            for k, v in extra.items():
                out += f"{k}{NAME_VALUE_SEPARATOR}{v}{_SEP}"
        return out

    def _property_dict(self, extra: dict[str, str] | None) -> dict[str, str]:
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
        return props


_SEP = PROPERTY_SEPARATOR
_TAGS = Prop.TAGS + NAME_VALUE_SEPARATOR
_KEYS = Prop.KEYS + NAME_VALUE_SEPARATOR
_DELAY = Prop.DELAY_TIME_LEVEL + NAME_VALUE_SEPARATOR
_WAIT = Prop.WAIT_STORE_MSG_OK + NAME_VALUE_SEPARATOR
_SYSTEM_KEYS = frozenset({Prop.TAGS, Prop.KEYS, Prop.DELAY_TIME_LEVEL, Prop.WAIT_STORE_MSG_OK})
"""The properties `encoded_properties` writes from fields, before `extra`."""


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
    region_id: str = ""
    """The broker's region (`regionId`, RocketMQ's `SendResult.regionId`): where an
    `access_channel="CLOUD"` client sends the message's trace."""
