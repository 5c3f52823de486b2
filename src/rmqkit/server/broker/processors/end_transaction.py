"""END_TRANSACTION: a producer commits or rolls back a half message (RocketMQ
`EndTransactionProcessor`). Usually sent one-way; an answer is given when one is asked for.
A slave answers SLAVE_NOT_AVAILABLE, as RocketMQ's does: half messages are resolved on the master.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmqkit.common.names import TRANS_HALF_TOPIC
from rmqkit.common.properties import Prop
from rmqkit.errors import CorruptRecordError
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import decode_record
from rmqkit.remoting.connection import Connection, HandlerResult
from rmqkit.server.broker.headers import Header, HeaderProblem
from rmqkit.server.broker.processors.send_back import slave_refusal
from rmqkit.server.broker.transaction import COMMIT, ROLLBACK, UNKNOWN

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker


class EndTransactionProcessor:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def __call__(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        refusal = slave_refusal(
            self.broker, cmd, ResponseCode.SLAVE_NOT_AVAILABLE, "transaction commits or rollbacks"
        )
        if refusal is not None:
            return refusal
        try:
            h = Header(cmd.ext_fields)
            group = h.text("producerGroup")
            queue_offset = h.integer("tranStateTableOffset")
            phys = h.integer("commitLogOffset")
            decision = h.integer("commitOrRollback", 32)
        except HeaderProblem as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR, str(exc))
        if decision == UNKNOWN:
            return None  # the producer does not know yet: the broker will check again
        if decision not in (COMMIT, ROLLBACK):
            return cmd.response(
                ResponseCode.SYSTEM_ERROR,
                f"commitOrRollback must be {COMMIT} (commit), {ROLLBACK} (rollback) or "
                f"{UNKNOWN} (unknown), not {decision}",
            )
        rec = self.broker.store.look_message_by_offset(phys)
        try:
            half = decode_record(rec, inflate=False) if rec is not None else None
        except CorruptRecordError:
            half = None
        if half is None or half.topic != TRANS_HALF_TOPIC:
            return cmd.response(
                ResponseCode.SYSTEM_ERROR,
                f"Find prepared transaction message failed: no half message at offset {phys}",
            )
        if half.properties.get(Prop.PRODUCER_GROUP) != group or half.queue_offset != queue_offset:
            return cmd.response(
                ResponseCode.SYSTEM_ERROR,
                "the producer group or the half queue offset does not match the half message",
            )
        return self._end(cmd, half, decision)

    async def _end(self, cmd: RemotingCommand, half: object, decision: int) -> RemotingCommand:
        from rmqkit.protocol.record import StoredMessage

        assert isinstance(half, StoredMessage)
        r = await self.broker.transactions.end(half, decision)
        if r is not None and not r.stored:
            return cmd.response(ResponseCode.SYSTEM_ERROR, r.remark or r.status.name)
        return cmd.response(ResponseCode.SUCCESS)
