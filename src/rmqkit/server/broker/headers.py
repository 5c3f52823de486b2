"""Reading request headers (extFields) the way RocketMQ's `CommandCustomHeader` decoding does.

A mandatory field that is missing, or a number that is not one or does not fit its Java type
(`int` or `long`), ends the request with SYSTEM_ERROR and a remark naming the field, as the Java
broker answers.
"""

from __future__ import annotations

from rmqkit.common.java_values import json_int, parse_bool
from rmqkit.protocol.command import RemotingCommand

SEND_V2_NAMES = {
    "a": "producerGroup", "b": "topic", "c": "defaultTopic", "d": "defaultTopicQueueNums",
    "e": "queueId", "f": "sysFlag", "g": "bornTimestamp", "h": "flag", "i": "properties",
    "j": "reconsumeTimes", "k": "unitMode", "l": "maxReconsumeTimes", "m": "batch",
    "n": "brokerName",
}  # fmt: skip
"""SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE carry the send header with one-letter names."""


class HeaderProblem(Exception):
    """A request header that cannot be used; the message is the response's remark."""


class Header:
    """Typed access to a request's extFields."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields

    @classmethod
    def of_send_v2(cls, cmd: RemotingCommand) -> Header:
        return cls({SEND_V2_NAMES.get(k, k): v for k, v in cmd.ext_fields.items()})

    def text(self, name: str) -> str:
        value = self.fields.get(name)
        if value is None:
            raise HeaderProblem(f"the request header field '{name}' is missing")
        return value

    def opt_text(self, name: str, default: str | None = None) -> str | None:
        return self.fields.get(name, default)

    def integer(self, name: str, bits: int = 64) -> int:
        """A number field: Java's `long` (64 bits) or `int` (`bits=32`). One that is not a
        number, or does not fit, ends the request, as Java's parsing fails on it."""
        return self._number(name, self.text(name), bits)

    def opt_int(self, name: str, default: int, bits: int = 64) -> int:
        """`integer`, or `default` when the field is missing or empty."""
        raw = self.fields.get(name)
        return default if raw is None or raw == "" else self._number(name, raw, bits)

    @staticmethod
    def _number(name: str, raw: str, bits: int) -> int:
        value = json_int(raw, bits)
        if value is None:
            java = "int" if bits == 32 else "long"
            raise HeaderProblem(
                f"the request header field '{name}' is not a number (a Java {java}): {raw!r}"
            )
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        return parse_bool(self.fields.get(name), default)
