"""The rmqkit starter: what a Python service touches (rocketmq-spring-boot-starter for Python).

```python
@rocket_listener(topic="order", tag="paid", group="payment-service")
async def on_paid(order: OrderPaid, meta: MessageMeta) -> None: ...

async with RocketApp(RocketSettings()) as app:
    await app.template.send("order:created", OrderCreated(id="o-1"), idempotency_key="o-1")
```
"""

from rmqkit.client.transaction import TransactionState
from rmqkit.starter.app import RocketApp
from rmqkit.starter.container import Scoped
from rmqkit.starter.embedded import EmbeddedCluster
from rmqkit.starter.listener import (
    ListenerRegistry,
    ListenerSpec,
    default_registry,
    rocket_listener,
)
from rmqkit.starter.meta import MessageMeta
from rmqkit.starter.outbox import TransactionLog
from rmqkit.starter.outcomes import BatchFailed, Drop, GiveUp, RetryLater
from rmqkit.starter.payload import PayloadError
from rmqkit.starter.settings import RocketSettings
from rmqkit.starter.template import RocketTemplate
from rmqkit.starter.transactional import (
    FlowRegistry,
    TxContext,
    default_flows,
    transactional_producer,
)

__all__ = [
    "BatchFailed",
    "Drop",
    "EmbeddedCluster",
    "FlowRegistry",
    "GiveUp",
    "ListenerRegistry",
    "ListenerSpec",
    "MessageMeta",
    "PayloadError",
    "RetryLater",
    "RocketApp",
    "RocketSettings",
    "RocketTemplate",
    "Scoped",
    "TransactionLog",
    "TransactionState",
    "TxContext",
    "default_flows",
    "default_registry",
    "rocket_listener",
    "transactional_producer",
]
