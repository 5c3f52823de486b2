"""TransactionLog: the check-back answer from the row the local transaction wrote."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.orm import Session

from rmqkit.client.transaction import TransactionState
from rmqkit.errors import ConfigurationError
from rmqkit.starter.outbox import TransactionLog

NOW = 1_000_000.0


def make(path: Path, **kw: object) -> TransactionLog:
    log = TransactionLog.sqlite(path, clock=lambda: NOW, rollback_after_s=60, **kw)  # type: ignore[arg-type]
    log.ensure_table()
    return log


async def test_committed_row_means_commit_missing_row_waits_then_rolls_back(
    tmp_path: Path,
) -> None:
    log = make(tmp_path / "db.sqlite")
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    with conn:
        log.record(conn, "tx-committed")
    conn.execute("BEGIN")
    log.record(conn, "tx-rolled-back")
    conn.rollback()
    conn.close()
    born_recent = int((NOW - 5) * 1000)
    born_old = int((NOW - 120) * 1000)
    assert await log.state("tx-committed", born_recent) is TransactionState.COMMIT
    assert await log.state("tx-rolled-back", born_recent) is TransactionState.UNKNOWN
    assert await log.state("tx-rolled-back", born_old) is TransactionState.ROLLBACK


async def test_sqlalchemy_connection_and_session(tmp_path: Path) -> None:
    path = tmp_path / "sa.sqlite"
    log = make(path)
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        log.record(conn, "via-connection")
    with Session(engine) as session, session.begin():
        log.record(session, "via-session")
    engine.dispose()
    for tx in ("via-connection", "via-session"):
        assert await log.state(tx, int(NOW * 1000)) is TransactionState.COMMIT


def test_named_paramstyle_and_bad_table_name(tmp_path: Path) -> None:
    log = make(tmp_path / "n.sqlite", paramstyle="named")
    conn = sqlite3.connect(tmp_path / "n.sqlite")
    with conn:
        log.record(conn, "named")
    assert conn.execute("SELECT tx_id FROM rmqkit_tx_log").fetchall() == [("named",)]
    conn.close()
    with pytest.raises(ConfigurationError, match="letters, digits"):
        TransactionLog(lambda: None, table="x; DROP TABLE y")
