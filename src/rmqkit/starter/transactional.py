"""`@transactional_producer`: named local-transaction flows on one transactional producer.

rocketmq-spring allows one `RocketMQLocalTransactionListener` per template, so a service with N
transactional use cases needs N templates (N producer groups) or an if/else dispatcher. Here each
flow is a class with `execute` and `check`, registered by name; the name travels in a property of
the half message, and the broker's check-back is dispatched to the flow that sent it.

```python
@transactional_producer("create-order")
class CreateOrder:
    async def execute(self, order: Order, tx: TxContext) -> bool: ...  # True: commit
    async def check(self, order: Order, meta: MessageMeta) -> TransactionState: ...
```
`execute` may return a `TransactionState`, True/False, or None (UNKNOWN: the broker asks `check`
later). If it raises, the broker is told UNKNOWN (so `check` decides from the local state) and the
exception reaches the caller. With `outbox=TransactionLog(...)`, `check` can be left out: the
answer is read from the row `execute` wrote in its own database transaction.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from rmqkit.client.message import Message, SendResult
from rmqkit.client.transaction import TransactionSendResult, TransactionState
from rmqkit.errors import ConfigurationError
from rmqkit.protocol.record import StoredMessage
from rmqkit.starter.meta import FLOW_PROPERTY, MessageMeta
from rmqkit.starter.payload import PayloadError, PayloadType

log = logging.getLogger("rmqkit.transaction")
C = TypeVar("C", bound=type)


@dataclass(frozen=True, slots=True)
class TxContext:
    """What `execute` learns about the half message it runs for.

    Attributes:
        tx_id: the message id of the half message; `check` sees the same id (`meta.msg_id`),
            so a row keyed by it tells `check` whether the local transaction committed.
        arg: the `arg` given to `send_in_transaction`.
        send: the broker's answer to the half message.
    """

    tx_id: str
    arg: Any
    send: SendResult


class TransactionOutbox(Protocol):
    """Answers a check-back from a record the local transaction wrote (see `TransactionLog`)."""

    async def state(self, tx_id: str, born_timestamp_ms: int) -> TransactionState: ...


@dataclass(frozen=True)
class FlowSpec:
    """A declared flow: its name, its class and an optional outbox."""

    name: str
    cls: type
    outbox: TransactionOutbox | None = None


class FlowRegistry:
    """Flows declared with `@transactional_producer` (the app takes `default_flows`)."""

    def __init__(self) -> None:
        self._flows: dict[str, FlowSpec] = {}

    def add(self, spec: FlowSpec) -> None:
        if spec.name in self._flows and self._flows[spec.name].cls is not spec.cls:
            raise ConfigurationError(f"two transactional flows are named {spec.name!r}")
        self._flows[spec.name] = spec

    def __iter__(self) -> Iterator[FlowSpec]:
        return iter(list(self._flows.values()))

    def __len__(self) -> int:
        return len(self._flows)

    def clear(self) -> None:
        self._flows.clear()


default_flows = FlowRegistry()


def transactional_producer(
    name: str, *, outbox: TransactionOutbox | None = None, registry: FlowRegistry | None = None
) -> Callable[[C], C]:
    """Declare a transactional flow named `name` on a class with `execute` (and `check`).

    Raises:
        ConfigurationError: the class lacks `execute`, or lacks `check` without an outbox.
    """

    def decorate(cls: C) -> C:
        if not inspect.isclass(cls):
            raise ConfigurationError("@transactional_producer decorates a class")
        if not callable(getattr(cls, "execute", None)):
            raise ConfigurationError(f"flow {name!r}: {cls.__name__} needs an execute() method")
        if outbox is None and not callable(getattr(cls, "check", None)):
            raise ConfigurationError(
                f"flow {name!r}: {cls.__name__} needs a check() method, or pass outbox="
            )
        (default_flows if registry is None else registry).add(FlowSpec(name, cls, outbox))
        return cls

    return decorate


def _first_param_type(method: Callable[..., Any]) -> PayloadType:
    params = [p for p in inspect.signature(method).parameters.values() if p.name != "self"]
    hints = typing.get_type_hints(inspect.unwrap(method))
    ann = hints.get(params[0].name, inspect.Parameter.empty) if params else bytes
    return PayloadType(ann)


def _as_state(value: Any, where: str) -> TransactionState:
    if isinstance(value, TransactionState):
        return value
    if value is None:
        return TransactionState.UNKNOWN
    if isinstance(value, bool):
        return TransactionState.COMMIT if value else TransactionState.ROLLBACK
    raise TypeError(f"{where} returned {value!r}; return a TransactionState, a bool or None")


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Flow:
    """A flow bound to an instance of its class."""

    def __init__(self, spec: FlowSpec, instance: Any) -> None:
        self.spec = spec
        self.instance = instance
        self.check_type = (
            _first_param_type(instance.check) if callable(getattr(instance, "check", None))
            else PayloadType(bytes)
        )  # fmt: skip

    async def check(self, m: StoredMessage, group: str) -> TransactionState:
        where = f"flow {self.spec.name!r} check"
        if self.spec.outbox is not None and not callable(getattr(self.instance, "check", None)):
            return await self.spec.outbox.state(m.msg_id, m.born_timestamp)
        try:
            payload = self.check_type.decode(m.body)
        except PayloadError:
            log.exception("%s: the half message %s does not decode; rolling back", where, m.msg_id)
            return TransactionState.ROLLBACK
        meta = MessageMeta.of(m, group)
        return _as_state(await _maybe_await(self.instance.check(payload, meta)), where)


class TransactionFlows:
    """The flows of one transactional producer: sends half messages and answers check-backs."""

    def __init__(self, flows: dict[str, Flow], group: str) -> None:
        self.flows = flows
        self.group = group
        self.producer: Any = None  # a TransactionProducerPort, set by the app before start

    async def send(self, msg: Message, flow: str, payload: Any, arg: Any) -> TransactionSendResult:
        f = self.flows.get(flow)
        if f is None:
            known = ", ".join(sorted(self.flows)) or "none"
            raise ConfigurationError(f"no transactional flow named {flow!r} (declared: {known})")
        if self.producer is None:
            raise ConfigurationError("the transactional producer is not started")
        msg.properties[FLOW_PROPERTY] = flow
        raised: list[BaseException] = []

        async def execute(_: Message, sent: SendResult) -> TransactionState:
            try:
                value = await _maybe_await(
                    f.instance.execute(payload, TxContext(sent.msg_id, arg, sent))
                )
            except Exception as exc:
                raised.append(exc)
                log.warning("flow %r: execute raised %r; the broker will check back", flow, exc)
                return TransactionState.UNKNOWN
            return _as_state(value, f"flow {flow!r} execute")

        result: TransactionSendResult = await self.producer.send_in_transaction(msg, execute)
        if raised:
            raise raised[0]
        return result

    async def check(self, m: StoredMessage) -> TransactionState:
        """The check-back: dispatched by the flow name the half message carries."""
        name = m.properties.get(FLOW_PROPERTY)
        flow = self.flows.get(name or "")
        if flow is None:
            log.error("check-back for %s names flow %r, which this producer does not have",
                      m.msg_id, name)  # fmt: skip
            return TransactionState.UNKNOWN
        try:
            return await flow.check(m, self.group)
        except Exception:
            log.exception("flow %r: check raised; answering UNKNOWN", name)
            return TransactionState.UNKNOWN
