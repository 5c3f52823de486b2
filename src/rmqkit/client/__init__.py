"""The rmqkit client: asyncio producers and consumers over RocketMQ's remoting protocol."""

from rmqkit.client.instance import ClientConfig, ClientInstance
from rmqkit.client.message import Message, MessageQueue, SendResult, SendStatus
from rmqkit.client.producer import Producer
from rmqkit.client.pull_consumer import LitePullConsumer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.protocol.acl import SessionCredentials
from rmqkit.remoting.tls import ClientTls

__all__ = [
    "ClientConfig",
    "ClientInstance",
    "ClientTls",
    "ConsumeContext",
    "ConsumeResult",
    "LitePullConsumer",
    "Message",
    "MessageQueue",
    "Producer",
    "PushConsumer",
    "SendResult",
    "SendStatus",
    "SessionCredentials",
]
