"""TransactionProducer: a message committed together with a local transaction (RocketMQ
`TransactionMQProducer`).

`send_in_transaction` sends a half message (invisible to consumers), runs the local step, then
commits or rolls the message back with END_TRANSACTION. If that answer is lost or UNKNOWN, the
broker later asks the group's producers (CHECK_TRANSACTION_STATE) and `checker` answers from the
local state: a crash between the local commit and the broker commit loses nothing.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from rmqkit.client.message import Message, SendResult
from rmqkit.client.producer import Producer
from rmqkit.common.properties import Prop
from rmqkit.errors import RemotingError
from rmqkit.protocol.codes import RequestCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.message_id import decode_offset_msg_id
from rmqkit.protocol.record import StoredMessage
from rmqkit.remoting.connection import Connection

log = logging.getLogger("rmqkit.transaction")


class TransactionState(Enum):
    """A local transaction's outcome, with RocketMQ's END_TRANSACTION codes."""

    COMMIT = 8
    ROLLBACK = 12
    UNKNOWN = 0


@dataclass(slots=True)
class TransactionSendResult:
    send: SendResult
    state: TransactionState


Execute = Callable[[Message, SendResult], "TransactionState | Awaitable[TransactionState]"]
Checker = Callable[[StoredMessage], "TransactionState | Awaitable[TransactionState]"]


async def _call(fn: Callable[..., Any], *args: Any) -> TransactionState:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, TransactionState):
        raise TypeError(f"a transaction step must return a TransactionState, not {result!r}")
    return result


class TransactionProducer(Producer):
    """A producer whose sends are tied to local transactions.

    Args:
        checker: answers the broker's check for a half message whose outcome it never heard.
        (the other arguments are `Producer`'s)
    """

    def __init__(self, group: str, namesrv_addr: str, *, checker: Checker, **kw: Any) -> None:
        super().__init__(group, namesrv_addr, **kw)
        self.checker = checker

    async def start(self) -> None:
        await super().start()
        inst = self.instance
        inst.transaction_checkers[self.group] = self._on_check
        inst.server_handlers[RequestCode.CHECK_TRANSACTION_STATE] = inst.dispatch_check
        await inst.heartbeat_all()

    async def stop(self) -> None:
        self.instance.transaction_checkers.pop(self.group, None)
        await super().stop()

    async def send_in_transaction(self, msg: Message, execute: Execute) -> TransactionSendResult:
        """Send `msg` as a half message, run `execute`, then commit or roll it back.

        `execute` may be async; an exception in it rolls the message back and is re-raised.
        """
        msg.properties[Prop.TRANSACTION_PREPARED] = "true"
        msg.properties[Prop.PRODUCER_GROUP] = self.group
        sent = await self.send(msg)
        try:
            state = await _call(execute, msg, sent)
        except Exception:
            await self._end(sent, TransactionState.ROLLBACK)
            raise
        await self._end(sent, state)
        return TransactionSendResult(sent, state)

    async def _end(self, sent: SendResult, state: TransactionState) -> None:
        _, phys = decode_offset_msg_id(sent.offset_msg_id)
        cmd = self._end_command(sent.queue_offset, phys, sent.msg_id, state, from_check=False)
        try:
            await self.instance.remoting.invoke_oneway(sent.broker_addr, cmd)
        except RemotingError as exc:
            log.warning(
                "END_TRANSACTION for %s not sent (%s); the broker will check", sent.msg_id, exc
            )

    def _end_command(
        self,
        queue_offset: int,
        phys: int,
        msg_id: str,
        state: TransactionState,
        *,
        from_check: bool,
    ) -> RemotingCommand:
        return RemotingCommand(RequestCode.END_TRANSACTION, ext_fields={
            "producerGroup": self.group, "tranStateTableOffset": str(queue_offset),
            "commitLogOffset": str(phys), "commitOrRollback": str(state.value),
            "fromTransactionCheck": "true" if from_check else "false", "msgId": msg_id,
            "transactionId": msg_id,
        })  # fmt: skip

    async def _on_check(self, conn: Connection, cmd: RemotingCommand, msg: StoredMessage) -> None:
        try:
            state = await _call(self.checker, msg)
        except Exception:
            log.exception("transaction check of %s failed; answering UNKNOWN", msg.msg_id)
            state = TransactionState.UNKNOWN
        ext = cmd.ext_fields
        end = self._end_command(
            int(ext.get("tranStateTableOffset", "0")), int(ext.get("commitLogOffset", "0")),
            ext.get("msgId", msg.msg_id), state, from_check=True,
        )  # fmt: skip
        if conn.is_open:
            conn.oneway(end)
