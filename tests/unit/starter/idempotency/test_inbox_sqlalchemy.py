"""SqlAlchemyInbox with SQLite: Session and AsyncSession claims commit with the business write.

SQLAlchemy is optional for rmqkit: these tests are skipped when it is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import create_engine, event, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from rmqkit.starter.idempotency import SqlAlchemyInbox  # noqa: E402

SCOPE = "group-a"


def _engine(path: Path, *, savepoint_ready: bool = False) -> Any:
    engine = create_engine(f"sqlite:///{path}")
    if savepoint_ready:
        # SQLAlchemy's recipe for working SAVEPOINTs on pysqlite: let SQLAlchemy emit BEGIN.
        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY)")
    SqlAlchemyInbox().ensure_table(engine)
    return engine


def _handle(inbox: SqlAlchemyInbox, engine: Any, key: str, order: str) -> bool:
    with Session(engine) as session, session.begin():
        if not inbox.claim_sync(session, SCOPE, key):
            return False
        session.execute(text("INSERT INTO orders VALUES (:id)"), {"id": order})
    return True


def _orders(engine: Any) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT id FROM orders ORDER BY id"))]


def _claimed(engine: Any) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT idem_key FROM rmqkit_inbox ORDER BY 1"))]


@pytest.mark.parametrize("savepoints", [None, True], ids=["sqlite-default", "savepoint"])
def test_session_claims_once_and_commits_with_the_business_write(
    tmp_path: Path, savepoints: bool | None
) -> None:
    engine = _engine(tmp_path / "app.db", savepoint_ready=savepoints is True)
    inbox = SqlAlchemyInbox(savepoints=savepoints)
    assert _handle(inbox, engine, "msg-1", "order-1")
    assert not _handle(inbox, engine, "msg-1", "order-1-again")
    assert _orders(engine) == ["order-1"]
    engine.dispose()


@pytest.mark.parametrize("savepoints", [None, True], ids=["sqlite-default", "savepoint"])
def test_session_rollback_takes_the_claim_and_a_duplicate_keeps_the_transaction(
    tmp_path: Path, savepoints: bool | None
) -> None:
    engine = _engine(tmp_path / "app.db", savepoint_ready=savepoints is True)
    inbox = SqlAlchemyInbox(savepoints=savepoints)
    with Session(engine) as session:
        assert inbox.claim_sync(session, SCOPE, "msg-1")
        session.execute(text("INSERT INTO orders VALUES ('order-1')"))
        session.rollback()
    assert _claimed(engine) == []
    assert _handle(inbox, engine, "msg-1", "order-1")
    with Session(engine) as session, session.begin():
        session.execute(text("INSERT INTO orders VALUES ('order-2')"))
        assert not inbox.claim_sync(session, SCOPE, "msg-1")
        assert inbox.claim_sync(session, SCOPE, "msg-2")
    assert _orders(engine) == ["order-1", "order-2"]
    assert _claimed(engine) == ["msg-1", "msg-2"]
    engine.dispose()


async def test_async_session_claims_once(tmp_path: Path) -> None:
    pytest.importorskip("aiosqlite")
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    inbox = SqlAlchemyInbox()
    await inbox.ensure_table_async(engine)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE orders (id TEXT PRIMARY KEY)")

    async def handle(key: str, order: str) -> bool:
        async with AsyncSession(engine) as session, session.begin():
            if not await inbox.claim(session, SCOPE, key):
                return False
            await session.execute(text("INSERT INTO orders VALUES (:id)"), {"id": order})
        return True

    assert await handle("msg-1", "order-1")
    assert not await handle("msg-1", "order-1-again")
    async with AsyncSession(engine) as session:
        assert await inbox.claim(session, SCOPE, "msg-2")
        await session.rollback()
        rows = (await session.execute(text("SELECT id FROM orders"))).all()
        claimed = (await session.execute(text("SELECT idem_key FROM rmqkit_inbox"))).all()
    assert [r[0] for r in rows] == ["order-1"]
    assert [r[0] for r in claimed] == ["msg-1"]
    await engine.dispose()
