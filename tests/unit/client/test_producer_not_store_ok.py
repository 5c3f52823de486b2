"""`retry_another_broker_when_not_store_ok`: a stored-but-unconfirmed answer (a SYNC_MASTER
without its slave, a slow disk) is retried elsewhere only when the producer asks for it."""

from __future__ import annotations

from rmqkit.client.message import Message, SendStatus
from rmqkit.protocol.codes import ResponseCode
from tests.unit.client.test_producer_send_async import TOPIC, FakeBroker, broker, producer, uniq_key

__all__ = ["broker"]  # the fixture, imported for this module's tests


async def test_by_default_the_unconfirmed_result_is_returned(broker: FakeBroker) -> None:
    broker.script.extend([ResponseCode.SLAVE_NOT_AVAILABLE])
    async with producer(broker) as p:
        result = await p.send(Message(TOPIC, b"once"))
    assert result.status is SendStatus.SLAVE_NOT_AVAILABLE
    assert len(broker.sends) == 1


async def test_with_the_option_another_attempt_is_made_with_the_same_message_id(
    broker: FakeBroker,
) -> None:
    broker.script.extend([ResponseCode.FLUSH_SLAVE_TIMEOUT])
    async with producer(broker, retry_another_broker_when_not_store_ok=True) as p:
        result = await p.send(Message(TOPIC, b"twice"))
    assert result.status is SendStatus.SEND_OK
    assert len(broker.sends) == 2
    assert uniq_key(broker.sends[0]) == uniq_key(broker.sends[1]) == result.msg_id


async def test_when_every_attempt_is_unconfirmed_the_last_result_is_returned(
    broker: FakeBroker,
) -> None:
    broker.script.extend([ResponseCode.SLAVE_NOT_AVAILABLE] * 2 + [ResponseCode.FLUSH_DISK_TIMEOUT])
    async with producer(broker, retry_another_broker_when_not_store_ok=True) as p:
        result = await p.send(Message(TOPIC, b"thrice"))
    assert result.status is SendStatus.FLUSH_DISK_TIMEOUT
    assert len(broker.sends) == 3  # 1 + retry_times_when_send_failed (2)


async def test_send_async_is_not_retried_on_an_unconfirmed_result(broker: FakeBroker) -> None:
    broker.script.extend([ResponseCode.SLAVE_NOT_AVAILABLE])  # as RocketMQ: sync sends only
    async with producer(broker, retry_another_broker_when_not_store_ok=True) as p:
        result = await p.send_async(Message(TOPIC, b"async"))
    assert result.status is SendStatus.SLAVE_NOT_AVAILABLE
