"""SqlInbox with sqlite3: the claim commits, rolls back and deduplicates with the business write."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rmqkit.errors import ConfigurationError
from rmqkit.starter.idempotency import SqlInbox

from .contract import FakeClock


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE orders (id TEXT PRIMARY KEY)")
    SqlInbox().ensure_table(conn)  # commits the table above too
    conn.close()
    return path


@pytest.fixture
def conn(db: Path) -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(db)
    yield c
    c.close()


def handle(inbox: SqlInbox, conn: sqlite3.Connection, key: str, order: str) -> bool:
    """The documented pattern for a sync handler: claim, write, commit; a duplicate acks."""
    if not inbox.claim_sync(conn, "group-a", key):
        conn.rollback()
        return False
    conn.execute("INSERT INTO orders VALUES (?)", (order,))
    conn.commit()
    return True


def orders(db: Path) -> list[str]:
    with sqlite3.connect(db) as c:
        rows = [r[0] for r in c.execute("SELECT id FROM orders ORDER BY id")]
    c.close()
    return rows


def inbox_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT scope, idem_key, processed_at FROM rmqkit_inbox").fetchall()
    c.close()
    return rows


def test_the_first_delivery_runs_and_a_redelivery_is_skipped(db: Path, conn: Any) -> None:
    inbox = SqlInbox(clock=FakeClock(1_750_000_000.5))
    assert handle(inbox, conn, "msg-1", "order-1")
    assert not handle(inbox, conn, "msg-1", "order-1-again")
    assert orders(db) == ["order-1"]
    assert inbox_rows(db) == [("group-a", "msg-1", 1_750_000_000_500)]


def test_a_rolled_back_handler_takes_its_claim_with_it(db: Path, conn: Any) -> None:
    inbox = SqlInbox()
    assert inbox.claim_sync(conn, "group-a", "msg-1")
    conn.execute("INSERT INTO orders VALUES ('order-1')")
    conn.rollback()  # the handler failed (or the process died before commit)
    assert inbox_rows(db) == []
    assert handle(inbox, conn, "msg-1", "order-1")  # the redelivery runs
    assert orders(db) == ["order-1"]


def test_a_claim_opening_the_transaction_does_not_commit_on_its_own(db: Path, conn: Any) -> None:
    # sqlite3 opens a transaction only before DML; a SAVEPOINT would otherwise open its own,
    # and releasing it would commit the claim without the business writes.
    assert not conn.in_transaction
    assert SqlInbox().claim_sync(conn, "group-a", "msg-1")
    assert conn.in_transaction
    conn.rollback()
    assert inbox_rows(db) == []


def test_a_duplicate_leaves_the_transaction_usable(db: Path, conn: Any) -> None:
    inbox = SqlInbox()
    assert handle(inbox, conn, "msg-1", "order-1")
    conn.execute("INSERT INTO orders VALUES ('order-2')")  # earlier work in the same transaction
    assert not inbox.claim_sync(conn, "group-a", "msg-1")
    assert inbox.claim_sync(conn, "group-a", "msg-3")
    conn.commit()
    assert orders(db) == ["order-1", "order-2"]
    assert [r[1] for r in inbox_rows(db)] == ["msg-1", "msg-3"]


def test_scopes_are_isolated(conn: Any) -> None:
    inbox = SqlInbox()
    assert inbox.claim_sync(conn, "group-a", "msg-1")
    assert inbox.claim_sync(conn, "group-b", "msg-1")
    assert not inbox.claim_sync(conn, "group-b", "msg-1")


def test_autocommit_without_a_transaction_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        with pytest.raises(ConfigurationError, match="autocommit"):
            SqlInbox().claim_sync(conn, "group-a", "msg-1")
        conn.execute("BEGIN")
        assert SqlInbox().claim_sync(conn, "group-a", "msg-1")
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    assert inbox_rows(db) == []


def test_other_errors_propagate_and_keep_the_transaction(conn: Any) -> None:
    conn.execute("INSERT INTO orders VALUES ('order-1')")
    with pytest.raises(sqlite3.OperationalError):
        SqlInbox("no_such_table").claim_sync(conn, "group-a", "msg-1")
    assert conn.in_transaction
    conn.commit()
    assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1,)


@pytest.mark.parametrize("paramstyle", ["qmark", "named", "numeric"])
def test_paramstyles_sqlite_understands(paramstyle: str, conn: Any) -> None:
    inbox = SqlInbox(paramstyle=paramstyle)
    assert inbox.claim_sync(conn, "group-a", "msg-1")
    assert not inbox.claim_sync(conn, "group-a", "msg-1")


def test_insert_sql_in_every_paramstyle() -> None:
    inbox = SqlInbox("app.inbox")
    head = "INSERT INTO app.inbox (scope, idem_key, processed_at) VALUES "
    assert inbox.insert_sql("qmark") == head + "(?, ?, ?)"
    assert inbox.insert_sql("numeric") == head + "(:1, :2, :3)"
    assert inbox.insert_sql("named") == head + "(:scope, :idem_key, :processed_at)"
    assert inbox.insert_sql("format") == head + "(%s, %s, %s)"
    assert inbox.insert_sql("pyformat") == head + "(%(scope)s, %(idem_key)s, %(processed_at)s)"
    with pytest.raises(ConfigurationError):
        inbox.insert_sql("dollar")


@pytest.mark.parametrize("table", ["", "inbox; DROP TABLE orders", "a.b.c", "1inbox"])
def test_table_names_must_be_identifiers(table: str) -> None:
    with pytest.raises(ConfigurationError):
        SqlInbox(table)


def test_ensure_table_is_idempotent(conn: Any) -> None:
    SqlInbox().ensure_table(conn)
    SqlInbox().ensure_table(conn)


def test_purge_deletes_old_rows_only(db: Path, conn: Any) -> None:
    clock = FakeClock()
    inbox = SqlInbox(clock=clock)
    assert inbox.claim_sync(conn, "g", "old")
    clock.now += 100
    assert inbox.claim_sync(conn, "g", "new")
    conn.commit()
    assert inbox.purge_sync(conn, older_than_s=50) == 1
    conn.commit()
    assert [r[1] for r in inbox_rows(db)] == ["new"]


# --- async handlers ---------------------------------------------------------------------------


async def test_async_claim_on_a_sync_connection(db: Path, conn: Any) -> None:
    inbox = SqlInbox()
    assert await inbox.claim(conn, "group-a", "msg-1")
    conn.execute("INSERT INTO orders VALUES ('order-1')")
    conn.commit()
    assert not await inbox.claim(conn, "group-a", "msg-1")
    conn.rollback()
    assert orders(db) == ["order-1"]


class AsyncCursor:
    """A DB-API cursor whose calls are coroutines, as aiosqlite's and aiomysql's are."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def execute(self, sql: str, params: Any = ()) -> None:
        self._cursor.execute(sql, params)

    async def close(self) -> None:
        self._cursor.close()


class AsyncConnection:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    async def cursor(self) -> AsyncCursor:
        return AsyncCursor(self._conn.cursor())

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()


async def test_async_claim_on_an_async_connection(db: Path, conn: Any) -> None:
    aconn = AsyncConnection(conn)
    # The fake driver lives in no DB-API module, so name its error and paramstyle.
    inbox = SqlInbox(paramstyle="qmark", integrity_error=sqlite3.IntegrityError)
    await inbox.ensure_table_async(aconn)
    assert await inbox.claim(aconn, "group-a", "msg-1")
    await aconn.rollback()
    assert await inbox.claim(aconn, "group-a", "msg-1")
    await aconn.commit()
    assert not await inbox.claim(aconn, "group-a", "msg-1")
    assert conn.in_transaction  # the duplicate left the transaction open and usable
    await aconn.rollback()
    assert [r[1] for r in inbox_rows(db)] == ["msg-1"]


async def test_a_driver_without_a_known_integrity_error_is_refused(conn: Any) -> None:
    with pytest.raises(ConfigurationError, match="IntegrityError"):
        await SqlInbox(paramstyle="qmark").claim(AsyncConnection(conn), "g", "k")
