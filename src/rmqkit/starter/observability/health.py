"""Readiness and liveness for a RocketMQ application (the starter's health indicator).

A RocketMQ app is ready when its NameServer answers, its producers have started and each push
consumer has started and finished its first rebalance (before that it owns no queue, so it
consumes nothing). Components report with `register()` (a check that is called) or `mark()`
(a state they set as it changes); `readiness()` and `liveness()` gather them into a report.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from rmqkit.errors import ConfigurationError

CheckOutcome: TypeAlias = bool | tuple[bool, str]
"""What a check returns: ok, or (ok, detail)."""

Check: TypeAlias = Callable[[], CheckOutcome | Awaitable[CheckOutcome]]
"""A health check: a sync or async callable taking no arguments."""

UP: Final = "UP"
DOWN: Final = "DOWN"
NAME_SERVER_CHECK: Final = "nameserver"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The result of one check.

    Attributes:
        ok: whether the check passed.
        detail: a short human-readable explanation.
    """

    ok: bool
    detail: str = ""

    @property
    def status(self) -> str:
        """`UP` or `DOWN`, as Spring Boot's actuator spells it."""
        return UP if self.ok else DOWN

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly form: `{"status": ..., "ok": ..., "detail": ...}`."""
        return {"status": self.status, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class HealthReport:
    """All checks of one kind (readiness or liveness) and the verdict.

    Attributes:
        ok: True when every check passed (also when there are none).
        checks: each check's result, by name.
    """

    ok: bool
    checks: dict[str, CheckResult]

    @property
    def status(self) -> str:
        """`UP` or `DOWN`."""
        return UP if self.ok else DOWN

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly form: `{"status", "ok", "checks": {name: {...}}}`."""
        return {
            "status": self.status,
            "ok": self.ok,
            "checks": {name: result.to_dict() for name, result in self.checks.items()},
        }


@dataclass(slots=True)
class _Registered:
    check: Check
    readiness: bool
    liveness: bool


def producer_check_name(group: str) -> str:
    """The check name `mark_producer` uses: `producer:<group>`."""
    return f"producer:{group}"


def consumer_check_name(group: str) -> str:
    """The check name `mark_consumer` uses: `consumer:<group>`."""
    return f"consumer:{group}"


class Health:
    """Health checks of one application, for readiness and liveness probes.

    Args:
        check_timeout_s: how long one check may run before it counts as failed.
    """

    def __init__(self, *, check_timeout_s: float = 2.0) -> None:
        if check_timeout_s <= 0:
            raise ConfigurationError(f"check_timeout_s must be > 0, got {check_timeout_s}")
        self._timeout_s = check_timeout_s
        self._checks: dict[str, _Registered] = {}
        self._marks: dict[str, CheckResult] = {}

    def register(
        self, name: str, check: Check, *, readiness: bool = True, liveness: bool = False
    ) -> None:
        """Add a check that is called on every probe.

        Args:
            name: a unique name, such as `nameserver`.
            check: returns ok or (ok, detail); may be async; an exception or a timeout fails it.
            readiness: include it in `readiness()`.
            liveness: include it in `liveness()`.

        Raises:
            ConfigurationError: if the name is taken, or the check would be in no report.
        """
        if name in self._checks or name in self._marks:
            raise ConfigurationError(f"health check {name!r} is already registered")
        if not (readiness or liveness):
            raise ConfigurationError(f"health check {name!r} must be readiness, liveness or both")
        self._checks[name] = _Registered(check, readiness, liveness)

    def names(self) -> frozenset[str]:
        """The names of the registered checks and marks."""
        return frozenset(self._checks) | frozenset(self._marks)

    def unregister(self, name: str) -> None:
        """Remove a check or a mark; unknown names are ignored."""
        self._checks.pop(name, None)
        self._marks.pop(name, None)

    def mark(self, name: str, *, ready: bool, detail: str = "") -> None:
        """Set the state of a readiness item (created on first use).

        Args:
            name: the item, such as `consumer:orders-group`.
            ready: whether it is ready now.
            detail: a short explanation shown in the report.

        Raises:
            ConfigurationError: if `name` is a registered check.
        """
        if name in self._checks:
            raise ConfigurationError(f"{name!r} is a registered check, not a mark")
        self._marks[name] = CheckResult(ready, detail)

    def mark_producer(self, group: str, *, started: bool, detail: str = "") -> None:
        """Report a producer's state: ready once started.

        Args:
            group: the producer group.
            started: whether `start()` has completed (False again once it stops).
            detail: overrides the default explanation.
        """
        text = detail or ("started" if started else "not started")
        self.mark(producer_check_name(group), ready=started, detail=text)

    def mark_consumer(
        self, group: str, *, started: bool, rebalanced: bool, detail: str = ""
    ) -> None:
        """Report a push consumer's state: ready once started and rebalanced at least once.

        Args:
            group: the consumer group.
            started: whether `start()` has completed (False again once it stops).
            rebalanced: whether a rebalance has assigned its queues at least once.
            detail: overrides the default explanation.
        """
        ready = started and rebalanced
        if not detail:
            if not started:
                detail = "not started"
            elif not rebalanced:
                detail = "started, waiting for the first rebalance"
            else:
                detail = "started and rebalanced"
        self.mark(consumer_check_name(group), ready=ready, detail=detail)

    async def readiness(self) -> HealthReport:
        """Whether the app can do its work: every readiness check and every mark passes."""
        checks = {n: r.check for n, r in self._checks.items() if r.readiness}
        results = await self._run(checks)
        results.update(self._marks)
        return HealthReport(ok=all(r.ok for r in results.values()), checks=results)

    async def liveness(self) -> HealthReport:
        """Whether the process is alive: the event loop answered and every liveness check passes.

        Marks are left out: a consumer that is still rebalancing is not ready, but not dead.
        """
        checks = {n: r.check for n, r in self._checks.items() if r.liveness}
        results = await self._run(checks)
        return HealthReport(ok=all(r.ok for r in results.values()), checks=results)

    async def _run(self, checks: dict[str, Check]) -> dict[str, CheckResult]:
        if not checks:
            return {}
        names = list(checks)
        outcomes = await asyncio.gather(*(self._run_one(checks[n]) for n in names))
        return dict(zip(names, outcomes, strict=True))

    async def _run_one(self, check: Check) -> CheckResult:
        try:
            async with asyncio.timeout(self._timeout_s):
                outcome = check()
                if inspect.isawaitable(outcome):
                    outcome = await outcome
        except TimeoutError:
            return CheckResult(False, f"timed out after {self._timeout_s}s")
        except Exception as exc:
            return CheckResult(False, f"{type(exc).__name__}: {exc}")
        if isinstance(outcome, tuple):
            ok, detail = outcome
            return CheckResult(bool(ok), str(detail))
        return CheckResult(bool(outcome))


def _parse_addresses(addresses: str | Sequence[str]) -> list[tuple[str, int]]:
    items = addresses.split(";") if isinstance(addresses, str) else list(addresses)
    parsed: list[tuple[str, int]] = []
    for item in items:
        addr = item.strip()
        if not addr:
            continue
        host, sep, port = addr.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigurationError(f"name server address must be host:port, got {addr!r}")
        parsed.append((host, int(port)))
    if not parsed:
        raise ConfigurationError("no name server address given")
    return parsed


async def _reachable(host: str, port: int, timeout_s: float) -> str | None:
    """None if a TCP connection opens within the timeout, else why not."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return f"no answer in {timeout_s}s"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    writer.close()
    try:
        async with asyncio.timeout(max(timeout_s - (time.monotonic() - started), 0.1)):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        pass  # reachability is settled; a slow close says nothing about the name server
    return None


def name_server_check(addresses: str | Sequence[str], *, timeout_s: float = 1.0) -> Check:
    """A check that passes when at least one NameServer accepts a TCP connection.

    Clients fail over between NameServers, so one reachable address is enough; the detail lists
    the unreachable ones. Register it as `health.register(NAME_SERVER_CHECK, check)`.

    Args:
        addresses: `host:port` addresses, as a list or RocketMQ's `a:9876;b:9876` string.
        timeout_s: how long to wait for each connection (they are tried at the same time).

    Returns:
        An async check for `Health.register`.

    Raises:
        ConfigurationError: if an address is not `host:port` or none is given.
    """
    targets = _parse_addresses(addresses)

    async def check() -> tuple[bool, str]:
        errors = await asyncio.gather(*(_reachable(h, p, timeout_s) for h, p in targets))
        up = [f"{h}:{p}" for (h, p), err in zip(targets, errors, strict=True) if err is None]
        down = [f"{h}:{p} ({err})" for (h, p), err in zip(targets, errors, strict=True) if err]
        parts = []
        if up:
            parts.append("reachable: " + ", ".join(up))
        if down:
            parts.append("unreachable: " + ", ".join(down))
        return bool(up), "; ".join(parts)

    return check
