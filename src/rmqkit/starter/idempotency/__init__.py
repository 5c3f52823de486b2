"""Idempotent consumption: RocketMQ delivers at least once, these stores make handlers run once.

`IdempotencyStore` (memory, SQLite, Redis) leases a message key around the handler call;
`SqlInbox` records the key in the handler's own database transaction (exactly-once effect).
`RedisIdempotencyStore` needs the `redis` package and `SqlAlchemyInbox` needs SQLAlchemy; both
are imported only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rmqkit.errors import ConfigurationError
from rmqkit.starter.idempotency.base import Claim, Clock, IdempotencyStore
from rmqkit.starter.idempotency.inbox import SqlInbox
from rmqkit.starter.idempotency.memory import MemoryIdempotencyStore
from rmqkit.starter.idempotency.sqlite import SqliteIdempotencyStore

if TYPE_CHECKING:
    from rmqkit.starter.idempotency.inbox_sqlalchemy import SqlAlchemyInbox
    from rmqkit.starter.idempotency.redis import RedisIdempotencyStore

__all__ = [
    "Claim",
    "Clock",
    "IdempotencyStore",
    "MemoryIdempotencyStore",
    "RedisIdempotencyStore",
    "SqlAlchemyInbox",
    "SqlInbox",
    "SqliteIdempotencyStore",
    "store_from_url",
]


def __getattr__(name: str) -> Any:
    # The optional back ends load on first use, so a missing package only fails where it is used.
    if name == "RedisIdempotencyStore":
        from rmqkit.starter.idempotency.redis import RedisIdempotencyStore

        return RedisIdempotencyStore
    if name == "SqlAlchemyInbox":
        from rmqkit.starter.idempotency.inbox_sqlalchemy import SqlAlchemyInbox

        return SqlAlchemyInbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def store_from_url(url: str) -> IdempotencyStore:
    """Build an idempotency store from a URL (the starter settings name the store this way).

    Args:
        url: `memory://`; `sqlite:///relative/file.db` or `sqlite:////absolute/file.db` (the
            part after `sqlite:///` is the path, as in SQLAlchemy); `redis://host:port/db` or
            `rediss://...` (TLS).

    Returns:
        A store that is not yet connected: SQLite opens its file and Redis its connection on
        first use.

    Raises:
        ConfigurationError: on an unknown scheme or a SQLite URL without a path.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigurationError(f"idempotency store URL {url!r} has no scheme")
    if scheme == "memory":
        return MemoryIdempotencyStore()
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else ""
        if not path:
            raise ConfigurationError(
                f"SQLite idempotency store URL {url!r} needs a path: sqlite:///file.db"
            )
        return SqliteIdempotencyStore(path)
    if scheme in ("redis", "rediss"):
        from rmqkit.starter.idempotency.redis import RedisIdempotencyStore

        return RedisIdempotencyStore(url)
    raise ConfigurationError(
        f"unknown idempotency store URL scheme {scheme!r}: use memory://, sqlite:/// or redis://"
    )
