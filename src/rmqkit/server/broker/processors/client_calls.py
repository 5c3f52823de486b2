"""Admin requests the broker passes on to one consumer client (RocketMQ `AdminBrokerProcessor`'s
`callConsumer`): GET_CONSUMER_RUNNING_INFO and CONSUME_MESSAGE_DIRECTLY.

An admin tool cannot reach a consumer: consumers open connections, they do not listen. So the
tool asks a broker the consumer heart-beats to, naming the group and the client id; the broker
sends the request on over that client's connection and answers the tool with whatever the client
answered. CONSUME_MESSAGE_DIRECTLY first gets the message the id names from this broker's store:
the client is sent the stored record, and runs its listener on it (nothing is committed or
retried; it is a way to try a listener on one message).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmqkit.errors import CorruptRecordError, RemotingError, RemotingTimeoutError
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.message_id import decode_offset_msg_id
from rmqkit.remoting.connection import Connection
from rmqkit.server.broker.clients import ClientChannel
from rmqkit.server.broker.headers import Header, HeaderProblem

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker

CALL_CLIENT_TIMEOUT_S = 10.0
"""How long the broker waits for the client's answer (Java's `Broker2Client.callClient`)."""

CODES = (RequestCode.GET_CONSUMER_RUNNING_INFO, RequestCode.CONSUME_MESSAGE_DIRECTLY)


class ClientCallProcessor:
    """Passes GET_CONSUMER_RUNNING_INFO and CONSUME_MESSAGE_DIRECTLY on to the named client."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.timeout_s = CALL_CLIENT_TIMEOUT_S

    async def __call__(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        h = Header(cmd.ext_fields)
        try:
            group, client_id = h.text("consumerGroup"), h.text("clientId")
        except HeaderProblem as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR, str(exc))
        channel = self.find_channel(group, client_id)
        if channel is None:
            return cmd.response(
                ResponseCode.SYSTEM_ERROR, f"The Consumer {group} {client_id} not online"
            )
        ext = dict(cmd.ext_fields)
        body = bytes(cmd.body)
        if cmd.code == RequestCode.CONSUME_MESSAGE_DIRECTLY:
            found = self._stored_record(h.opt_text("msgId") or "")
            if isinstance(found, str):
                return cmd.response(ResponseCode.SYSTEM_ERROR, found)
            body = found
            ext["brokerName"] = self.broker.settings.broker_name
        try:
            answer = await channel.conn.request(
                RemotingCommand(cmd.code, ext_fields=ext, body=body), self.timeout_s
            )
        except RemotingTimeoutError as exc:
            return cmd.response(
                ResponseCode.CONSUME_MSG_TIMEOUT, f"consumer {group} {client_id} Timeout: {exc}"
            )
        except RemotingError as exc:
            return cmd.response(
                ResponseCode.SYSTEM_ERROR,
                f"invoke consumer {group} {client_id} Exception: {type(exc).__name__}: {exc}",
            )
        return cmd.response(answer.code, answer.remark, dict(answer.ext_fields), answer.body)

    def find_channel(self, group: str, client_id: str) -> ClientChannel | None:
        """The live connection of `client_id` in `group` (the first, as Java's `findChannel`)."""
        info = self.broker.clients.consumers.get(group)
        if info is None:
            return None
        for ch in info.clients.values():
            if ch.client_id == client_id and ch.conn.is_open:
                return ch
        return None

    def _stored_record(self, msg_id: str) -> bytes | str:
        """The stored record an offset message id names, or why there is none."""
        try:
            _, offset = decode_offset_msg_id(msg_id)
        except CorruptRecordError as exc:
            return f"consume message directly: {exc}"
        rec = self.broker.store.look_message_by_offset(offset)
        if rec is None:
            return (
                f"consume message directly: no message at CommitLog offset {offset} (message id "
                f"{msg_id}) in broker {self.broker.settings.broker_name}"
            )
        return bytes(rec)
