"""The SQL inbox: exactly-once *effect* for a consumer that writes to its own database.

RocketMQ delivers at least once; a store beside the database (Redis, a SQLite file) can still
lose the race between "business write committed" and "key marked done". The inbox closes it by
recording the message key in the handler's own transaction, so both commit or neither does::

    conn = pool.connect()                       # any DB-API 2.0 connection
    # 1. open the transaction (the driver's way, or let the first statement open it)
    if not await inbox.claim(conn, "group-a/orders", msg.keys):
        conn.rollback()                         # 2. a duplicate: nothing to do;
        return ConsumeResult.SUCCESS            #    skip the handler and ack
    conn.cursor().execute("INSERT INTO orders ...")  # 3. the business writes
    conn.commit()                               # 4. commit: row and inbox mark land together

A handler error (roll back) or a crash before step 4 takes the inbox row with it, so the
redelivery claims the key again. A
duplicate claim is detected through the driver's `IntegrityError` inside a SAVEPOINT, which is
rolled back so the caller's transaction stays usable (PostgreSQL aborts a transaction on any
failed statement otherwise). Sync handlers use `claim_sync`.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any

from rmqkit.errors import ConfigurationError
from rmqkit.starter.idempotency.base import DEFAULT_CLOCK, Clock, check_duration, check_key

DEFAULT_TABLE = "rmqkit_inbox"
SAVEPOINT = "rmqkit_inbox_claim"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


def _placeholder(paramstyle: str, index: int, name: str) -> str:
    """One parameter marker in a DB-API `paramstyle` (PEP 249)."""
    match paramstyle:
        case "qmark":
            return "?"
        case "numeric":
            return f":{index + 1}"
        case "named":
            return f":{name}"
        case "format":
            return "%s"
        case "pyformat":
            return f"%({name})s"
    raise ConfigurationError(f"unknown DB-API paramstyle {paramstyle!r}")


def _placeholders(paramstyle: str, names: tuple[str, ...]) -> list[str]:
    return [_placeholder(paramstyle, i, n) for i, n in enumerate(names)]


def _params(paramstyle: str, names: tuple[str, ...], values: tuple[object, ...]) -> Any:
    if paramstyle in ("named", "pyformat"):
        return dict(zip(names, values, strict=True))
    return values


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class SqlInbox:
    """The inbox table and the claim that inserts into it inside the caller's transaction.

    Works with any DB-API 2.0 connection (sqlite3, psycopg, PyMySQL, ...) and, in `claim`, with
    async drivers shaped like DB-API whose `cursor()`/`execute()` return awaitables (aiosqlite,
    aiomysql). The SQL is portable: `CREATE TABLE IF NOT EXISTS`, `VARCHAR`, `BIGINT`.

    Args:
        table: the inbox table's name (`schema.table` allowed).
        savepoints: wrap the insert in a SAVEPOINT; turn off only for a database without them,
            where a duplicate may then leave the transaction aborted.
        paramstyle: override the driver module's `paramstyle` (found from the connection).
        integrity_error: override the driver's `IntegrityError` (found from the connection).
        clock: epoch seconds for `processed_at`; defaults to `time.time`.

    Raises:
        ConfigurationError: if `table` is not a plain SQL identifier.
    """

    def __init__(
        self,
        table: str = DEFAULT_TABLE,
        *,
        savepoints: bool = True,
        paramstyle: str | None = None,
        integrity_error: type[Exception] | None = None,
        clock: Clock = DEFAULT_CLOCK,
    ) -> None:
        if not _IDENTIFIER.fullmatch(table):
            raise ConfigurationError(f"inbox table name {table!r} is not a plain SQL identifier")
        self.table = table
        self.savepoints = savepoints
        self._paramstyle = paramstyle
        self._integrity_error = integrity_error
        self._clock = clock

    # The key column is idem_key, not key: KEY is a reserved word in MySQL, and quoting it is
    # not portable (MySQL wants backticks unless ANSI_QUOTES is on).
    def create_table_sql(self) -> str:
        """The portable DDL of the inbox table; processed_at is epoch milliseconds."""
        return (
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            " scope VARCHAR(255) NOT NULL,"
            " idem_key VARCHAR(255) NOT NULL,"
            " processed_at BIGINT NOT NULL,"
            " PRIMARY KEY (scope, idem_key))"
        )

    def insert_sql(self, paramstyle: str) -> str:
        """The claim's INSERT in the driver's parameter style."""
        marks = _placeholders(paramstyle, ("scope", "idem_key", "processed_at"))
        return (
            f"INSERT INTO {self.table} (scope, idem_key, processed_at) VALUES ({', '.join(marks)})"
        )

    def ensure_table(self, conn: Any) -> None:
        """Create the inbox table if it is missing, and commit.

        Call it at startup, not inside a handler's transaction: it commits the connection.
        """
        cursor = conn.cursor()
        try:
            cursor.execute(self.create_table_sql())
        finally:
            cursor.close()
        conn.commit()

    async def ensure_table_async(self, conn: Any) -> None:
        """`ensure_table` for an async DB-API-shaped connection (or a sync one)."""
        cursor = await _maybe_await(conn.cursor())
        try:
            await _maybe_await(cursor.execute(self.create_table_sql()))
        finally:
            await _maybe_await(cursor.close())
        await _maybe_await(conn.commit())

    def claim_sync(self, conn: Any, scope: str, key: str) -> bool:
        """Insert the inbox row for (scope, key) in `conn`'s current transaction.

        Returns:
            True if this is the first claim (run the handler, then commit); False on a duplicate
            (the message was processed and committed before: skip the handler and ack). Either
            way the caller's transaction is still usable.

        Raises:
            ConfigurationError: on an empty scope or key, or a sqlite3 connection in autocommit
                mode with no transaction open (the claim would commit on its own).
        """
        check_key(scope, key)
        duplicate, sql, params = self._prepare(conn, scope, key)
        cursor = conn.cursor()
        try:
            if self._begin_needed(conn):
                cursor.execute("BEGIN")
            if self.savepoints:
                cursor.execute(f"SAVEPOINT {SAVEPOINT}")
            try:
                cursor.execute(sql, params)
            except duplicate:
                self._undo_sync(cursor)
                return False
            except BaseException:
                self._undo_sync(cursor)
                raise
            if self.savepoints:
                cursor.execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
            return True
        finally:
            cursor.close()

    async def claim(self, conn: Any, scope: str, key: str) -> bool:
        """`claim_sync` for async handlers; takes sync and async DB-API-shaped connections.

        A sync connection is used in place (it belongs to the caller's thread and transaction);
        the insert is one short statement.

        Returns:
            True if this is the first claim (run the handler, then commit); False on a duplicate
            (skip the handler and ack). Either way the caller's transaction is still usable.

        Raises:
            ConfigurationError: on an empty scope or key, or a sqlite3 connection in autocommit
                mode with no transaction open (the claim would commit on its own).
        """
        check_key(scope, key)
        duplicate, sql, params = self._prepare(conn, scope, key)
        cursor = await _maybe_await(conn.cursor())
        try:
            if self._begin_needed(conn):
                await _maybe_await(cursor.execute("BEGIN"))
            if self.savepoints:
                await _maybe_await(cursor.execute(f"SAVEPOINT {SAVEPOINT}"))
            try:
                await _maybe_await(cursor.execute(sql, params))
            except duplicate:
                await self._undo(cursor)
                return False
            except BaseException:
                await self._undo(cursor)
                raise
            if self.savepoints:
                await _maybe_await(cursor.execute(f"RELEASE SAVEPOINT {SAVEPOINT}"))
            return True
        finally:
            await _maybe_await(cursor.close())

    def purge_sync(self, conn: Any, *, older_than_s: float) -> int:
        """Delete inbox rows older than `older_than_s` seconds, in `conn`'s transaction.

        Keep rows longer than any redelivery can arrive (RocketMQ retries for hours by default).

        Returns:
            How many rows were deleted (the driver's rowcount; -1 if it does not say).
        """
        check_duration("older_than_s", older_than_s)
        paramstyle = self._paramstyle or self._driver_attr(conn, "paramstyle", "qmark")
        (mark,) = _placeholders(paramstyle, ("before",))
        cutoff = int((self._clock() - older_than_s) * 1000)
        cursor = conn.cursor()
        try:
            cursor.execute(
                f"DELETE FROM {self.table} WHERE processed_at < {mark}",
                _params(paramstyle, ("before",), (cutoff,)),
            )
            return int(cursor.rowcount)
        finally:
            cursor.close()

    # --- internals ----------------------------------------------------------------------------

    def _prepare(self, conn: Any, scope: str, key: str) -> tuple[type[Exception], str, Any]:
        paramstyle = self._paramstyle or self._driver_attr(conn, "paramstyle", "qmark")
        duplicate = self._integrity_error or getattr(conn, "IntegrityError", None)
        if duplicate is None:
            duplicate = self._driver_attr(conn, "IntegrityError", None)
        if duplicate is None:
            raise ConfigurationError(
                f"cannot find the IntegrityError of {type(conn).__module__}; "
                "pass SqlInbox(integrity_error=...)"
            )
        names = ("scope", "idem_key", "processed_at")
        values = (scope, key, int(self._clock() * 1000))
        return duplicate, self.insert_sql(paramstyle), _params(paramstyle, names, values)

    @staticmethod
    def _driver_attr(conn: Any, name: str, default: Any) -> Any:
        """A DB-API module attribute (paramstyle, IntegrityError) of the connection's driver."""
        module = sys.modules.get(type(conn).__module__.partition(".")[0])
        return getattr(module, name, default)

    @staticmethod
    def _begin_needed(conn: Any) -> bool:
        """sqlite3 (legacy transaction control) opens a transaction only before DML.

        A SAVEPOINT outside a transaction would open its own, and its RELEASE would then commit
        the claim alone; so open the transaction first, as the driver would before an INSERT.
        """
        if getattr(conn, "in_transaction", True):
            return False
        if getattr(conn, "autocommit", None) is True or conn.isolation_level is None:
            raise ConfigurationError(
                "the connection is in autocommit mode with no transaction open: "
                "BEGIN before claiming, so the claim commits with the business writes"
            )
        return True

    def _undo_sync(self, cursor: Any) -> None:
        if self.savepoints:
            cursor.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
            cursor.execute(f"RELEASE SAVEPOINT {SAVEPOINT}")

    async def _undo(self, cursor: Any) -> None:
        if self.savepoints:
            await _maybe_await(cursor.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}"))
            await _maybe_await(cursor.execute(f"RELEASE SAVEPOINT {SAVEPOINT}"))
