"""Database engine and sessions, shared by the web app, the CLI and the worker."""

from __future__ import annotations

import contextlib
import os
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from control.config import Settings

#: The settings each engine was created from: code that only holds a session (the audit
#: chain, which needs keys that are never stored in the database) finds them here.
_ENGINE_SETTINGS: weakref.WeakKeyDictionary[Engine, Settings] = weakref.WeakKeyDictionary()


def settings_of(bind: Engine | Connection) -> Settings | None:
    """The settings of the engine behind ``bind`` (``session.get_bind()``), if made here."""
    engine = bind.engine if isinstance(bind, Connection) else bind
    return _ENGINE_SETTINGS.get(engine)


def create_engine(settings: Settings) -> AsyncEngine:
    """An async engine for the configured database (SQLite: WAL, foreign keys, busy wait,
    transactions that take the write lock when they begin)."""
    engine = _create_engine(settings)
    _ENGINE_SETTINGS[engine.sync_engine] = settings
    return engine


def _create_engine(settings: Settings) -> AsyncEngine:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        create_private_sqlite_file(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            dbapi_connection.isolation_level = None  # BEGIN comes from _begin_immediate

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(connection: Any) -> None:
            # A transaction that reads and then writes, begun with a plain (deferred) BEGIN,
            # fails at once with "database is locked" when another connection committed in
            # between (the busy timeout does not apply). Taking the write lock at BEGIN makes
            # transactions wait for each other instead: SQLite has one writer anyway.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (responses are built after commit)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def create_private_sqlite_file(url: str) -> None:
    """Create the SQLite database file readable and writable by its owner only (0600).

    SQLite gives its -wal and -shm files the database file's permissions; left to the
    process umask, the file holding pseudonymised patient data would usually be world
    readable. An existing file keeps the permissions its operator chose.
    """
    path = url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def sync_url(settings: Settings) -> str:
    """The same database with a synchronous driver, for Alembic."""
    url = settings.resolved_database_url
    return url.replace("sqlite+aiosqlite://", "sqlite://")
