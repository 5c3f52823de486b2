"""`ListenerInvoker`: one listener bound to its function, turning delivered messages into calls
and the calls' outcomes into decisions (ack, retry with a delay level, dead-letter, drop).

Per message: decode the payload (a body that does not decode is dead-lettered at once), claim the
idempotency key (a key already done is acknowledged without a call), call the handler inside a
process span, classify what it raised, then complete or release the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rmqkit.common.properties import Prop
from rmqkit.protocol.record import StoredMessage
from rmqkit.starter.container import enter_scoped, resolve
from rmqkit.starter.idempotency.base import Claim, IdempotencyStore
from rmqkit.starter.listener import ListenerSpec
from rmqkit.starter.meta import IDEMPOTENCY_KEY, MessageMeta
from rmqkit.starter.observability import (
    Outcome,
    StarterMetrics,
    batch_process_span,
    process_span,
    span_needed,
)
from rmqkit.starter.outcomes import ACK, Action, BatchFailed, Decision, delay_level_for
from rmqkit.starter.payload import PayloadError
from rmqkit.starter.signature import HandlerSignature

log = logging.getLogger("rmqkit.listener")

BUSY_RETRY_DELAY_S = 5.0
"""A key leased by another consumer: look again after this long (rounded to a delay level)."""

Reply = Callable[[StoredMessage, Any], Awaitable[None]]


KeyFunction = Callable[[Any, StoredMessage, MessageMeta | None], str | None]
"""Extracts a message's idempotency key from (payload, message, its `MessageMeta`). Only a
callable key source reads the meta (the invoker builds one for it); the others read the message,
so that a listener with a built-in key source costs no `MessageMeta` per message."""


def key_function(source: Any) -> KeyFunction:
    """The idempotency key extractor for a `KeySource` (see `rmqkit.starter.listener`).

    Raises:
        ConfigurationError: `source` is none of the forms a `KeySource` takes.
    """
    if callable(source):
        return lambda payload, m, meta: _str(source(payload, meta))
    if source == "msg_id":
        return lambda payload, m, meta: m.msg_id
    if source == "keys":
        return lambda payload, m, meta: " ".join(m.keys) or None
    if source == "auto":
        return lambda payload, m, meta: m.properties.get(IDEMPOTENCY_KEY) or m.msg_id
    if isinstance(source, str) and source.startswith("property:"):
        name = source.removeprefix("property:")
        return lambda payload, m, meta: m.properties.get(name)
    if isinstance(source, str) and source.startswith("payload."):
        path = source.removeprefix("payload.").split(".")
        return lambda payload, m, meta: _str(functools.reduce(_field, path, payload))
    from rmqkit.errors import ConfigurationError

    raise ConfigurationError(
        f"idempotency_key={source!r}: use 'msg_id', 'keys', 'auto', 'property:<name>', "
        "'payload.<field>' or a callable (payload, meta) -> str"
    )


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


@dataclass(frozen=True, slots=True)
class IdempotencyOptions:
    """The store and the times the app uses for every listener with an idempotency key."""

    store: IdempotencyStore
    lease_s: float = 60.0
    retention_s: float = 7 * 24 * 3600.0


class ListenerInvoker:
    """Calls one listener's function for the messages routed to it."""

    def __init__(
        self,
        spec: ListenerSpec,
        func: Callable[..., Any],
        *,
        idempotency: IdempotencyOptions | None = None,
        metrics: StarterMetrics | None = None,
        reply: Reply | None = None,
        dead_letter: Callable[[StoredMessage, str], Awaitable[bool]] | None = None,
        container: Any = None,
    ) -> None:
        self.spec = spec
        self.func = func
        self.sig = HandlerSignature.of(spec)
        self.key_of = key_function(spec.idempotency_key) if spec.idempotency_key else None
        if self.key_of is not None and idempotency is None:
            from rmqkit.errors import ConfigurationError

            raise ConfigurationError(f"{spec.name}: idempotency_key needs an idempotency store")
        self.idem = idempotency
        # A store that batches writes (SQLite) takes completions without making the ack wait.
        self._complete_soon: Callable[..., None] | None = getattr(
            idempotency.store if idempotency else None, "complete_soon", None
        )
        self.scope = f"{spec.group}:{spec.name}"
        self.metrics = metrics
        self.reply = reply
        self.dead_letter = dead_letter
        self._scoped = [(name, resolve(sc.provider, container)) for name, sc in self.sig.scoped]
        # MessageMeta is built only when something reads it (about 5 us a message).
        self._wants_meta = bool(self.sig.meta_param) or callable(spec.idempotency_key)
        self._with_kwargs = bool(self.sig.meta_param or self.sig.raw_param)
        # An async function with nothing to enter around it is awaited in place: no extra frames.
        self._direct = self.sig.is_async and not self._scoped
        self._payload_only = self._direct and bool(self.sig.payload_param) and not self._with_kwargs

    async def _call(self, kwargs: dict[str, Any], args: Sequence[Any]) -> Any:
        if self._scoped:
            async with contextlib.AsyncExitStack() as stack:
                for name, factory in self._scoped:
                    kwargs[name] = await stack.enter_async_context(enter_scoped(factory))
                return await self._call_now(kwargs, args)
        return await self._call_now(kwargs, args)

    async def _call_now(self, kwargs: dict[str, Any], args: Sequence[Any]) -> Any:
        if self.sig.is_async:
            return await self.func(*args, **kwargs)
        return await asyncio.to_thread(functools.partial(self.func, *args, **kwargs))

    def _kwargs(self, meta: Any, raw: Any) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.sig.meta_param:
            kw[self.sig.meta_param] = meta
        if self.sig.raw_param:
            kw[self.sig.raw_param] = raw
        return kw

    async def _poison(self, m: StoredMessage, reason: str) -> Decision:
        """A message no retry can help: to the DLQ with the reason in a property if possible."""
        log.error("%s: dead-lettering %s: %s", self.spec.name, m.msg_id, reason)
        written = self.dead_letter is not None and await self.dead_letter(m, reason)
        return Decision(Action.DLQ, reason=reason, dead_lettered=written)

    def _counted(self, m: StoredMessage, decision: Decision, start: float) -> Decision:
        if self.metrics is not None:
            self.metrics.consumed(
                self.spec.group, m.properties.get(Prop.RETRY_TOPIC) or m.topic,
                outcome="ack" if decision is ACK else _outcome(decision),
                duration_s=time.perf_counter() - start,
            )  # fmt: skip
        return decision

    async def invoke_one(self, m: StoredMessage, broker_name: str) -> Decision:
        """Process one message; returns what to do with it.

        This runs for every message, so its steps are written out here rather than spread over
        helper coroutines (each would cost a frame, and a suspension point, per message).
        """
        start = time.perf_counter()
        sig = self.sig
        try:
            payload = sig.payload.decode(m.body) if sig.payload is not None else None
        except PayloadError as exc:
            return self._counted(m, await self._poison(m, str(exc)), start)
        meta = MessageMeta.of(m, self.spec.group, broker_name) if self._wants_meta else None
        key = None
        idem = self.idem
        if self.key_of is not None and idem is not None:
            try:
                key = self.key_of(payload, m, meta)
            except Exception as exc:
                return self._counted(m, await self._poison(m, f"idempotency key: {exc!r}"), start)
            if key is not None:
                claim = await idem.store.acquire(self.scope, key, lease_s=idem.lease_s)
                if claim is Claim.DONE:
                    log.info("%s: %s already processed (key %r)", self.spec.name, m.msg_id, key)
                    return self._counted(m, Decision(Action.ACK, reason="duplicate"), start)
                if claim is Claim.BUSY:
                    busy = Decision(Action.RETRY, delay_level_for(BUSY_RETRY_DELAY_S), "busy")
                    return self._counted(m, busy, start)
        result = None
        if span_needed(m.properties):
            with process_span(
                m.properties.get(Prop.RETRY_TOPIC) or m.topic, group=self.spec.group,
                msg_id=m.msg_id, tag=m.tags, keys=m.properties.get(Prop.KEYS),
                reconsume_times=m.reconsume_times, properties=m.properties,
            ) as span:  # fmt: skip
                try:
                    args = [payload] if sig.payload_param else []
                    result = await self._call(self._kwargs(meta, m), args)
                    decision = ACK
                except Exception as exc:
                    decision = self._failed(m, exc)
                    span.set_error(exc)
        else:
            try:
                if self._payload_only:
                    result = await self.func(payload)
                else:
                    args = [payload] if sig.payload_param else []
                    if self._direct:
                        result = await self.func(*args, **self._kwargs(meta, m))
                    else:
                        result = await self._call(self._kwargs(meta, m), args)
                decision = ACK
            except Exception as exc:
                decision = self._failed(m, exc)
        if decision is not ACK and decision.action is Action.DLQ:
            decision = await self._poison(m, decision.reason)
        if key is not None and idem is not None:
            if decision is ACK:
                if self._complete_soon is not None:  # joins the store's group commit
                    self._complete_soon(self.scope, key, retention_s=idem.retention_s)
                else:
                    await idem.store.complete(self.scope, key, retention_s=idem.retention_s)
            else:
                await idem.store.release(self.scope, key)
        if decision is ACK and self.reply is not None and result is not None:
            await self.reply(m, result)
        if self.metrics is not None:  # _counted, written out: this is every message's path
            self.metrics.consumed(
                self.spec.group, m.properties.get(Prop.RETRY_TOPIC) or m.topic,
                outcome="ack" if decision is ACK else _outcome(decision),
                duration_s=time.perf_counter() - start,
            )  # fmt: skip
        return decision

    def _failed(self, m: StoredMessage, exc: Exception) -> Decision:
        decision = self.spec.policy.decide(exc)
        _log_failure(self.spec.name, m, decision, exc)
        return decision

    async def invoke_batch(self, msgs: list[StoredMessage], broker_name: str) -> list[Decision]:
        """Process a batch with one call of a batch handler; returns one decision per message."""
        start = time.perf_counter()
        metas = [MessageMeta.of(m, self.spec.group, broker_name) for m in msgs]
        decisions: list[Decision | None] = [None] * len(msgs)
        payloads: list[Any] = []
        index: list[int] = []  # positions in msgs of the payloads handed to the handler
        for i, m in enumerate(msgs):
            try:
                payloads.append(self.sig.payload.decode(m.body) if self.sig.payload else None)
                index.append(i)
            except PayloadError as exc:
                decisions[i] = await self._poison(m, str(exc))
        if index:
            kw: dict[str, Any] = {}
            if self.sig.meta_param:
                kw[self.sig.meta_param] = [metas[i] for i in index]
            if self.sig.raw_param:
                kw[self.sig.raw_param] = [msgs[i] for i in index]
            props = [msgs[i].properties for i in index]
            with batch_process_span(metas[0].topic, group=self.spec.group, messages=props) as span:
                try:
                    await self._call(kw, [payloads])
                    outcome: dict[int, BaseException] = {}
                except BatchFailed as exc:
                    outcome = exc.failed
                except Exception as exc:
                    span.set_error(exc)
                    outcome = dict.fromkeys(range(len(index)), exc)
            for j, i in enumerate(index):
                failure = outcome.get(j)
                d = ACK if failure is None else self.spec.policy.decide(failure)
                if d.action is Action.DLQ:
                    d = await self._poison(msgs[i], d.reason)
                decisions[i] = d
        if self.metrics is not None:
            each_s = (time.perf_counter() - start) / len(msgs)
            for meta, dec in zip(metas, decisions, strict=True):
                self.metrics.consumed(self.spec.group, meta.topic,
                                      outcome=_outcome(dec or ACK), duration_s=each_s)  # fmt: skip
        return [d if d is not None else ACK for d in decisions]


def _outcome(d: Decision) -> Outcome:
    if d.reason == "duplicate" and d.action is Action.ACK:
        return "duplicate"
    return d.action.value


def _log_failure(name: str, m: StoredMessage, d: Decision, exc: BaseException) -> None:
    if d.action is Action.RETRY:
        log.warning(
            "%s: %s failed (attempt %d), retry at level %d: %r",
            name, m.msg_id, m.reconsume_times + 1, d.delay_level, exc,
        )  # fmt: skip
    elif d.action is Action.DROP:
        log.info("%s: %s dropped: %s", name, m.msg_id, d.reason)
