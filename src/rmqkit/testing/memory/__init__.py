"""An in-memory RocketMQ for tests: `MemoryBroker` (topics, queues, delays, retries, dead-letter
queues, transactions, request-reply and offsets, with RocketMQ's rules) on a `FakeClock`, and
`MemoryTransport`, which gives the starter's `RocketApp` producers and consumers of it.

```python
broker = MemoryBroker()
async with RocketApp(settings, transport=MemoryTransport(broker), listeners=[...]) as app:
    await app.template.send("orders:paid", order)
    await broker.drain()        # every handler call done
    await broker.advance(30)    # 30 s later: due retries delivered
```
"""

from rmqkit.testing.memory.app import RocketTestApp, RocketTestAppFactory
from rmqkit.testing.memory.broker import MemoryBroker
from rmqkit.testing.memory.clock import FakeClock
from rmqkit.testing.memory.consumer import MemoryConsumer
from rmqkit.testing.memory.producer import MemoryProducer, MemoryTransactionProducer
from rmqkit.testing.memory.transport import MemoryTransport

__all__ = [
    "FakeClock",
    "MemoryBroker",
    "MemoryConsumer",
    "MemoryProducer",
    "MemoryTransactionProducer",
    "MemoryTransport",
    "RocketTestApp",
    "RocketTestAppFactory",
]
