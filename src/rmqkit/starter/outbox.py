"""`TransactionLog`: the check-back answer derived from a row the local transaction wrote.

A transactional flow's `execute` calls `log.record(conn, tx.tx_id)` inside its own database
transaction, next to the business writes. If that transaction committed, the row exists and a
check-back answers COMMIT; if it never committed, the row is missing and, once the half message is
older than `rollback_after_s` (so the transaction cannot still be running), the answer is
ROLLBACK; before that, UNKNOWN (the broker asks again later). A crash between the local commit
and the broker commit therefore ends in COMMIT, never in a lost or phantom message.

Works with any DB-API 2.0 connection (sqlite3 by default); give `paramstyle` for drivers that do
not use `?` placeholders.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from rmqkit.client.transaction import TransactionState
from rmqkit.errors import ConfigurationError

ParamStyle = Literal["qmark", "format", "pyformat", "named", "numeric"]


def _placeholder(style: ParamStyle, i: int) -> str:
    """The i-th (0-based) placeholder in a DB-API paramstyle."""
    return {
        "qmark": "?", "format": "%s", "pyformat": f"%(p{i})s", "named": f":p{i}",
        "numeric": f":{i + 1}",
    }[style]  # fmt: skip


class TransactionLog:
    """A table of committed local transactions, keyed by the half message's id.

    Args:
        connect: opens a new DB-API connection (used by check-backs, from a worker thread).
        table: the table's name (created by `ensure_table`).
        rollback_after_s: a half message older than this without a row is rolled back.
        paramstyle: the driver's placeholder style.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        table: str = "rmqkit_tx_log",
        rollback_after_s: float = 60.0,
        paramstyle: ParamStyle = "qmark",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not table.replace("_", "").isalnum():
            raise ConfigurationError(f"table name {table!r}: letters, digits and _ only")
        self.connect = connect
        self.table = table
        self.rollback_after_s = rollback_after_s
        self.clock = clock
        p0, p1 = _placeholder(paramstyle, 0), _placeholder(paramstyle, 1)
        self._insert = f"INSERT INTO {table} (tx_id, committed_at_ms) VALUES ({p0}, {p1})"
        self._select = f"SELECT 1 FROM {table} WHERE tx_id = {p0}"
        self._style = paramstyle

    @classmethod
    def sqlite(cls, path: str | Path, **kw: Any) -> TransactionLog:
        """A log in a SQLite file (the embedded default)."""
        return cls(lambda: sqlite3.connect(path, timeout=30), **kw)

    def _params(self, *values: Any) -> Any:
        if self._style in ("pyformat", "named"):
            return {f"p{i}": v for i, v in enumerate(values)}
        return values

    def ensure_table(self, conn: Any | None = None) -> None:
        """Create the table if it is missing (on `conn`, or on a new connection)."""
        own = conn is None
        conn = conn or self.connect()
        try:
            cur = conn.cursor()
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} ("
                "tx_id VARCHAR(64) PRIMARY KEY, committed_at_ms BIGINT NOT NULL)"
            )
            conn.commit()
        finally:
            if own:
                conn.close()

    def record(self, conn: Any, tx_id: str) -> None:
        """Write the row for `tx_id` in the caller's open transaction (commit is the caller's).

        Args:
            conn: a DB-API connection, or a SQLAlchemy `Connection` or `Session` (the statement
                goes through `exec_driver_sql`, so `paramstyle` must be the driver's).
        """
        params = self._params(tx_id, int(self.clock() * 1000))
        if hasattr(conn, "exec_driver_sql"):  # SQLAlchemy Connection
            conn.exec_driver_sql(self._insert, params)
        elif not hasattr(conn, "cursor") and hasattr(conn, "connection"):  # SQLAlchemy Session
            conn.connection().exec_driver_sql(self._insert, params)
        else:
            conn.cursor().execute(self._insert, params)

    def _exists(self, tx_id: str) -> bool:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(self._select, self._params(tx_id))
            return cur.fetchone() is not None
        finally:
            conn.close()

    async def state(self, tx_id: str, born_timestamp_ms: int) -> TransactionState:
        """COMMIT if the row exists; ROLLBACK if it is missing and the message is old enough;
        UNKNOWN otherwise."""
        if await asyncio.to_thread(self._exists, tx_id):
            return TransactionState.COMMIT
        age_s = self.clock() - born_timestamp_ms / 1000
        if age_s >= self.rollback_after_s:
            return TransactionState.ROLLBACK
        return TransactionState.UNKNOWN
