"""One error tree for rmqkit, keyed by RocketMQ response codes.

`RmqkitError` is the root. Remote failures answered by a broker or NameServer are
`BrokerResponseError` subclasses, one per `ResponseCode`; `error_for_code()` finds the class.
Store failures that escape the store are few and precise (`StoreClosedError`, `CorruptRecordError`,
`DiskFullError`).
"""

from __future__ import annotations

from typing import ClassVar

from rmqkit.protocol.codes import ResponseCode


class RmqkitError(Exception):
    """Root of every error rmqkit raises on purpose."""


class ConfigurationError(RmqkitError, ValueError):
    """A setting or an argument is wrong; the message names it and says what is allowed."""


class StoreError(RmqkitError):
    """The message store cannot do what was asked."""


class StoreClosedError(StoreError):
    """The store was used before `start()` or after `stop()`."""


class DiskFullError(StoreError):
    """The file system has no room for what the store must write (ENOSPC or a quota).

    Raised before the store writes through a mapping, where a full disk would otherwise
    kill the process with SIGBUS. The message names the file and the OS error.
    """


class CorruptRecordError(StoreError):
    """Bytes that should hold a stored message record do not."""

    def __init__(self, reason: str, offset: int | None = None) -> None:
        where = f" at physical offset {offset}" if offset is not None else ""
        super().__init__(f"corrupt message record{where}: {reason}")
        self.reason = reason
        self.offset = offset


class UnsupportedCompressionError(CorruptRecordError):
    """A record body is compressed with an algorithm this installation cannot inflate."""


class RemotingError(RmqkitError):
    """The transport failed: connect, timeout, or a broken frame."""


class RemotingTimeoutError(RemotingError, TimeoutError):
    """No reply arrived in time."""


class RemotingConnectError(RemotingError, ConnectionError):
    """A connection could not be opened."""


class RequestTimeoutError(RmqkitError, TimeoutError):
    """A request (request-reply) was sent, but its reply did not arrive in time.

    RocketMQ's `RequestTimeoutException`. Not a `RemotingError`: the transport worked, the
    replier did not answer within the request's TTL.
    """

    def __init__(self, correlation_id: str, timeout_ms: int, topic: str = "") -> None:
        where = f" to {topic}" if topic else ""
        super().__init__(f"no reply to request {correlation_id}{where} within {timeout_ms} ms")
        self.correlation_id = correlation_id
        self.timeout_ms = timeout_ms
        self.topic = topic


class BrokerResponseError(RmqkitError):
    """A broker or NameServer answered with a non-success response code."""

    code: ClassVar[ResponseCode] = ResponseCode.SYSTEM_ERROR
    retriable: ClassVar[bool] = False

    def __init__(self, remark: str = "", *, addr: str | None = None, request: str | None = None):
        parts = [f"{self.code.name} ({int(self.code)})"]
        if request:
            parts.append(f"for {request}")
        if addr:
            parts.append(f"from {addr}")
        text = " ".join(parts)
        super().__init__(f"{text}: {remark}" if remark else text)
        self.remark = remark
        self.addr = addr
        self.request = request


class SystemError_(BrokerResponseError):
    """The server failed internally (SYSTEM_ERROR)."""

    code = ResponseCode.SYSTEM_ERROR
    retriable = True


class SystemBusyError(BrokerResponseError):
    code = ResponseCode.SYSTEM_BUSY
    retriable = True


class RequestCodeNotSupportedError(BrokerResponseError):
    code = ResponseCode.REQUEST_CODE_NOT_SUPPORTED


class FlushDiskTimeoutError(BrokerResponseError):
    """Stored, but not flushed to disk within the sync-flush timeout."""

    code = ResponseCode.FLUSH_DISK_TIMEOUT


class SlaveNotAvailableError(BrokerResponseError):
    code = ResponseCode.SLAVE_NOT_AVAILABLE


class FlushSlaveTimeoutError(BrokerResponseError):
    code = ResponseCode.FLUSH_SLAVE_TIMEOUT


class MessageIllegalError(BrokerResponseError):
    """The message is too large, or its topic or properties are not allowed."""

    code = ResponseCode.MESSAGE_ILLEGAL


class ServiceNotAvailableError(BrokerResponseError):
    """The broker refuses writes for now (disk full, shutting down, slave)."""

    code = ResponseCode.SERVICE_NOT_AVAILABLE
    retriable = True


class NoPermissionError(BrokerResponseError):
    code = ResponseCode.NO_PERMISSION


class TopicNotExistError(BrokerResponseError):
    code = ResponseCode.TOPIC_NOT_EXIST
    retriable = True


class QueryNotFoundError(BrokerResponseError):
    code = ResponseCode.QUERY_NOT_FOUND


class SubscriptionParseFailedError(BrokerResponseError):
    code = ResponseCode.SUBSCRIPTION_PARSE_FAILED


class InvalidParameterError(BrokerResponseError):
    code = ResponseCode.INVALID_PARAMETER


def _all_subclasses(cls: type[BrokerResponseError]) -> list[type[BrokerResponseError]]:
    found: list[type[BrokerResponseError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


_BY_CODE: dict[int, type[BrokerResponseError]] = {}


def error_for_code(code: int) -> type[BrokerResponseError]:
    """The exception class for a response code.

    A RocketMQ code without a class of its own above (CONSUMER_NOT_ONLINE, ...) gets a
    `BrokerResponseError` subclass made once, so the error names the code that came back; a
    code RocketMQ does not define maps to `BrokerResponseError` itself.
    """
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls
    for sub in _all_subclasses(BrokerResponseError):
        if sub.code == code:
            cls = sub
            break
    else:
        try:
            known = ResponseCode(code)
        except ValueError:
            return BrokerResponseError
        name = "".join(part.title() for part in known.name.split("_")) + "Error"
        cls = type(name, (BrokerResponseError,), {"code": known, "__module__": __name__})
    _BY_CODE[code] = cls
    return cls
