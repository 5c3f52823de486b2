"""Request-reply on the client side (RocketMQ 4.6+ `RequestFutureHolder`, `RequestResponseFuture`,
`MessageUtil.createReplyMessage` and `ClientRemotingProcessor.receiveReplyMessage`).

A request carries CORRELATION_ID, REPLY_TO_CLIENT (the requester's client id) and TTL (its timeout
in ms); the broker adds CLUSTER. The replier builds its answer with `create_reply`, which goes to
`<cluster>_REPLY_TOPIC` with MSG_TYPE=reply, so the producer sends it with SEND_REPLY_MESSAGE_V2.
The broker pushes it to the requester with PUSH_REPLY_MESSAGE_TO_CLIENT, and `RequestRegistry`
hands it to the request waiting under its correlation id.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from rmqkit.client.message import Message
from rmqkit.common.java_values import parse_int
from rmqkit.common.properties import REPLY_MESSAGE_FLAG, Prop, decode_properties, reply_topic
from rmqkit.errors import ConfigurationError, CorruptRecordError, RequestTimeoutError
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import Host, StoredMessage, inflate_body, pack_host
from rmqkit.remoting.connection import Connection

log = logging.getLogger("rmqkit.request")

_NO_HOST: Host = (b"\x00\x00\x00\x00", 0)
_REQUIRED = (Prop.CLUSTER, Prop.MESSAGE_REPLY_TO_CLIENT, Prop.CORRELATION_ID)
"""What a request must carry for a reply to find its way back."""


def new_correlation_id() -> str:
    """A random UUID, as RocketMQ's `CorrelationIdUtil` makes them."""
    return str(uuid.uuid4())


def create_reply(
    request: StoredMessage, body: bytes, *, properties: Mapping[str, str] | None = None
) -> Message:
    """The reply to a request message, ready for `Producer.send_reply` (or `send`).

    Mirrors RocketMQ's `MessageUtil.createReplyMessage`: the reply goes to
    `<cluster>_REPLY_TOPIC` and carries MSG_TYPE=reply and the request's CORRELATION_ID,
    REPLY_TO_CLIENT and TTL, which cannot be overridden through `properties`.

    Args:
        request: the request as the consumer received it.
        body: the reply's payload.
        properties: user properties for the reply.

    Returns:
        The reply message.

    Raises:
        ConfigurationError: the message was not sent as a request (by `Producer.request` or a
            RocketMQ client's `request()`), so it lacks CLUSTER, REPLY_TO_CLIENT or
            CORRELATION_ID.
    """
    props = request.properties
    missing = [key for key in _REQUIRED if not props.get(key)]
    if missing:
        raise ConfigurationError(
            f"cannot reply to message {request.msg_id} of topic {request.topic}: it lacks the "
            f"{', '.join(missing)} propert{'ies' if len(missing) > 1 else 'y'}; only a message "
            "sent with a producer's request() can be replied to"
        )
    system = {
        Prop.MESSAGE_TYPE: REPLY_MESSAGE_FLAG,
        Prop.CORRELATION_ID: props[Prop.CORRELATION_ID],
        Prop.MESSAGE_REPLY_TO_CLIENT: props[Prop.MESSAGE_REPLY_TO_CLIENT],
    }
    if Prop.MESSAGE_TTL in props:
        system[Prop.MESSAGE_TTL] = props[Prop.MESSAGE_TTL]
    merged = {**(properties or {}), **system}
    return Message(reply_topic(props[Prop.CLUSTER]), body, properties=merged)


def is_reply(msg: Message) -> bool:
    """True for a message made by `create_reply` (MSG_TYPE=reply)."""
    return msg.properties.get(Prop.MESSAGE_TYPE) == REPLY_MESSAGE_FLAG


@dataclass(slots=True)
class PendingRequest:
    """One request waiting for its reply (RocketMQ `RequestResponseFuture`)."""

    correlation_id: str
    topic: str
    timeout_ms: int
    deadline: float
    """On the registry's clock (monotonic seconds); the request expires once it is passed."""
    future: asyncio.Future[StoredMessage]
    timer: asyncio.TimerHandle | None = None


class RequestRegistry:
    """Correlation id -> the request waiting for its reply, one per `ClientInstance`.

    Each request carries its own expiry timer, so no sweeping loop is needed; `expire()` still
    sweeps on demand, as RocketMQ's `scanExpiredRequest` does every second.
    """

    def __init__(self) -> None:
        self.pending: dict[str, PendingRequest] = {}
        self.dropped = 0
        """Replies that matched no waiting request (late, duplicated or foreign)."""

    def __len__(self) -> int:
        return len(self.pending)

    def register(self, correlation_id: str, timeout_ms: int, *, topic: str = "") -> PendingRequest:
        """Wait for the reply to `correlation_id`; after `timeout_ms` the future fails with
        `RequestTimeoutError` and the entry is removed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        pending = PendingRequest(correlation_id, topic, timeout_ms, deadline, loop.create_future())
        pending.timer = loop.call_at(deadline, self._time_out, correlation_id)
        self.pending[correlation_id] = pending
        return pending

    def complete(self, reply: StoredMessage) -> bool:
        """Hand `reply` to the request it answers; False (and the reply dropped) if none waits."""
        cid = reply.properties.get(Prop.CORRELATION_ID, "")
        pending = self.pending.pop(cid, None)
        if pending is None or pending.future.done():
            self.dropped += 1
            log.info("reply %s matches no waiting request (late or unknown); dropped", cid)
            return False
        if pending.timer is not None:
            pending.timer.cancel()
        pending.future.set_result(reply)
        return True

    def discard(self, correlation_id: str) -> None:
        """Forget a request (its caller stopped waiting): cancel its timer and its future."""
        pending = self.pending.pop(correlation_id, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        _settle(pending.future)

    def expire(self, now: float | None = None) -> list[str]:
        """Fail every request whose deadline has passed by `now` (default: the loop's clock);
        returns their correlation ids."""
        if now is None:
            now = asyncio.get_running_loop().time()
        gone = [cid for cid, p in self.pending.items() if now > p.deadline]
        for cid in gone:
            self._time_out(cid)
        return gone

    def _time_out(self, correlation_id: str) -> None:
        pending = self.pending.pop(correlation_id, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        log.info("request %s to %s timed out after %d ms",
                 correlation_id, pending.topic or "?", pending.timeout_ms)  # fmt: skip
        if not pending.future.done():
            pending.future.set_exception(
                RequestTimeoutError(correlation_id, pending.timeout_ms, pending.topic)
            )

    # -- PUSH_REPLY_MESSAGE_TO_CLIENT -------------------------------------------------------------

    def on_push_reply(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        """The broker pushes a reply: rebuild the message from the header, hand it over.

        Answers SUCCESS whether or not a request waits for it, as RocketMQ's client does: a late
        reply is nobody's error.
        """
        try:
            reply = decode_pushed_reply(cmd)
        except KeyError as exc:
            log.warning("reply pushed by %s lacks header field %s; ignored", conn.peer, exc)
            return cmd.response(ResponseCode.SYSTEM_ERROR, "process reply message fail")
        self.complete(reply)
        return cmd.response(ResponseCode.SUCCESS)


def _settle(fut: asyncio.Future[StoredMessage]) -> None:
    """Cancel a future nobody will await, or mark its exception as seen (no asyncio warning)."""
    if not fut.done():
        fut.cancel()
    elif not fut.cancelled():
        fut.exception()


def _host(text: str | None) -> Host:
    """`ip:port` (as ReplyMessageRequestHeader carries hosts) to a packed host."""
    if not text:
        return _NO_HOST
    ip, _, port = text.strip().lstrip("/").rpartition(":")
    try:
        return pack_host(ip.strip("[]"), int(port))
    except ValueError:
        return _NO_HOST


def _int(fields: Mapping[str, str], name: str) -> int:
    return parse_int(fields.get(name)) or 0  # Java leaves a missing (nullable) field at 0


def decode_pushed_reply(cmd: RemotingCommand) -> StoredMessage:
    """A PUSH_REPLY_MESSAGE_TO_CLIENT request (`ReplyMessageRequestHeader` + body) as a message.

    Raises:
        KeyError: the header has no topic.
    """
    f = cmd.ext_fields
    sys_flag = _int(f, "sysFlag")
    body = bytes(cmd.body)
    try:
        body = inflate_body(body, sys_flag)
    except CorruptRecordError as exc:  # RocketMQ keeps the raw body too
        log.warning("reply body does not inflate, kept as received: %s", exc)
    props = decode_properties(f.get("properties") or "")
    props[Prop.REPLY_MESSAGE_ARRIVE_TIME] = str(int(time.time() * 1000))
    return StoredMessage(
        topic=f["topic"],
        body=body,
        properties=props,
        queue_id=_int(f, "queueId"),
        flag=_int(f, "flag"),
        queue_offset=0,
        commit_log_offset=0,
        sys_flag=sys_flag,
        born_timestamp=_int(f, "bornTimestamp"),
        born_host=_host(f.get("bornHost")),
        store_timestamp=_int(f, "storeTimestamp"),
        store_host=_host(f.get("storeHost")),
        reconsume_times=_int(f, "reconsumeTimes"),
        prepared_transaction_offset=0,
        body_crc=0,
        store_size=0,
    )
