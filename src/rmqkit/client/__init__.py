"""The rmqkit client: asyncio producers (consumers to come) over RocketMQ's remoting protocol."""

from rmqkit.client.instance import ClientConfig, ClientInstance
from rmqkit.client.message import Message, MessageQueue, SendResult, SendStatus
from rmqkit.client.producer import Producer

__all__ = [
    "ClientConfig",
    "ClientInstance",
    "Message",
    "MessageQueue",
    "Producer",
    "SendResult",
    "SendStatus",
]
