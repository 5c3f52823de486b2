"""The SQL inbox through SQLAlchemy: claim a message key in a `Session` or `AsyncSession`.

The same exactly-once-effect pattern as `inbox.SqlInbox` (RocketMQ delivers at least once; the
dedup row commits with the business writes), for handlers that use SQLAlchemy's ORM::

    async with session_factory() as session, session.begin():
        if not await inbox.claim(session, "group-a/orders", msg.keys):
            return ConsumeResult.SUCCESS        # a duplicate: skip and ack (rolls back nothing)
        session.add(Order(...))                 # business writes; commit on leaving begin()

SQLAlchemy is optional: importing this module raises ImportError when it is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from rmqkit.starter.idempotency.base import DEFAULT_CLOCK, Clock, check_key
from rmqkit.starter.idempotency.inbox import DEFAULT_TABLE, SqlInbox

if importlib.util.find_spec("sqlalchemy") is None:
    raise ImportError("the SQLAlchemy inbox needs SQLAlchemy (pip install sqlalchemy)")

# Imported by name so that type checking does not need SQLAlchemy installed (it is no dependency).
_sa: Any = importlib.import_module("sqlalchemy")
_sa_exc: Any = importlib.import_module("sqlalchemy.exc")


class SqlAlchemyInbox:
    """Claims inbox rows through a SQLAlchemy `Session` or `AsyncSession`.

    The insert runs in a nested transaction (SAVEPOINT), so a duplicate leaves the session's
    transaction usable. On SQLite it runs without one by default: SQLite undoes only the failing
    statement and keeps the transaction, and pysqlite's legacy transaction handling would let a
    SAVEPOINT open (and its release commit) a transaction of its own.

    Args:
        table: the inbox table's name, as for `SqlInbox`.
        savepoints: True or False forces the SAVEPOINT on or off; None (the default) uses one
            on every database but SQLite.
        clock: epoch seconds for `processed_at`; defaults to `time.time`.
    """

    def __init__(
        self,
        table: str = DEFAULT_TABLE,
        *,
        savepoints: bool | None = None,
        clock: Clock = DEFAULT_CLOCK,
    ) -> None:
        self.sql = SqlInbox(table, paramstyle="named", clock=clock)
        self.savepoints = savepoints
        self._clock = clock
        self._insert = _sa.text(self.sql.insert_sql("named"))

    def ensure_table(self, engine: Any) -> None:
        """Create the inbox table if missing, in a transaction of its own on a sync `Engine`."""
        with engine.begin() as conn:
            conn.exec_driver_sql(self.sql.create_table_sql())

    async def ensure_table_async(self, engine: Any) -> None:
        """Create the inbox table if missing, in a transaction of its own on an `AsyncEngine`."""
        async with engine.begin() as conn:
            await conn.exec_driver_sql(self.sql.create_table_sql())

    def claim_sync(self, session: Any, scope: str, key: str) -> bool:
        """Insert the inbox row in the session's transaction (beginning it if needed).

        Returns:
            True on the first claim (run the handler, then commit); False on a duplicate (skip
            the handler and ack). Either way the session's transaction is still usable.

        Raises:
            ConfigurationError: on an empty scope or key.
        """
        check_key(scope, key)
        params = self._params(scope, key)
        try:
            if self._savepoint(session.connection().dialect.name):
                with session.begin_nested():
                    session.execute(self._insert, params)
            else:
                session.execute(self._insert, params)
        except _sa_exc.IntegrityError:
            return False
        return True

    async def claim(self, session: Any, scope: str, key: str) -> bool:
        """`claim_sync` for an `AsyncSession`.

        Returns:
            True on the first claim (run the handler, then commit); False on a duplicate (skip
            the handler and ack). Either way the session's transaction is still usable.

        Raises:
            ConfigurationError: on an empty scope or key.
        """
        check_key(scope, key)
        params = self._params(scope, key)
        try:
            if self._savepoint((await session.connection()).dialect.name):
                async with session.begin_nested():
                    await session.execute(self._insert, params)
            else:
                await session.execute(self._insert, params)
        except _sa_exc.IntegrityError:
            return False
        return True

    def _savepoint(self, dialect: str) -> bool:
        return dialect != "sqlite" if self.savepoints is None else self.savepoints

    def _params(self, scope: str, key: str) -> dict[str, object]:
        return {"scope": scope, "idem_key": key, "processed_at": int(self._clock() * 1000)}
