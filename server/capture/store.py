"""Where captured calls are kept: one table in SQLite (a file, the default) or PostgreSQL (the
store for several replicas), through SQLAlchemy Core so both speak the same code.

Synchronous on purpose: only the capture writer thread and the calls API's worker threads use it,
never the event loop. The schema is versioned (`capture_schema`) and upgraded at start-up by the
migrations in server/capture/schema.py, in order; a database newer than this code is refused
with a clear error.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from server.capture.schema import (
    MIGRATION_LOCK,
    MIGRATIONS,
    SCHEMA_VERSION,
    SUMMARY_COLUMNS,
    calls,
    schema,
)


class CaptureStoreError(Exception):
    """The capture database cannot be used; the message says why (never with a password)."""


def is_outage(error: BaseException) -> bool:
    """The database is unreachable or unusable (every row would fail), rather than one row
    being refused (too long for its column, a NUL, ...)."""
    return isinstance(error, (CaptureStoreError, OperationalError, InterfaceError))


def engine_url(url: str) -> str:
    """`postgresql://` means psycopg 3 (SQLAlchemy would pick psycopg2, which we do not ship)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return str(make_url(engine_url(url)).render_as_string(hide_password=True))
    except Exception:  # an unparsable URL: say nothing of it beyond its scheme
        return url.split(":", 1)[0] + ":…"


def fit_row(row: dict[str, Any]) -> dict[str, Any]:
    """`row` as every database takes it: strings cut to their column's length (a 100-character
    `x-request-id` lost a whole batch) and without NUL, which PostgreSQL's text refuses."""
    fitted = {}
    for name, value in row.items():
        if isinstance(value, str):
            value = value.replace("\x00", "\ufffd")
            length = getattr(calls.c[name].type, "length", None) if name in calls.c else None
            if length:
                value = value[:length]
        fitted[name] = value
    return fitted


def private_file(url: str) -> None:
    """A SQLite file is created readable by its owner only (0600): it holds what people said
    and showed on screen (it was created 0644, issue 23)."""
    parsed = make_url(engine_url(url))
    path = parsed.database
    if not parsed.drivername.startswith("sqlite") or not path or path == ":memory:":
        return
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    with contextlib.suppress(OSError):  # not ours to change: the owner chose its mode
        os.chmod(path, 0o600)


class CaptureStore:
    def __init__(self, url: str) -> None:
        try:
            private_file(url)
            self.engine: Engine = create_engine(engine_url(url), pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError, OSError) as error:
            raise CaptureStoreError(
                f"cannot use capture database {safe_url(url)}: {error}"
            ) from None
        self.url = safe_url(url)

    def upgrade(self) -> int:
        """Create or upgrade the schema; the version it is at."""
        try:
            with self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # Replicas start together against one database: one creates or upgrades
                    # the schema while the others wait, then find it done (without the lock
                    # two CREATE TABLEs race and the loser's first calls are dropped).
                    connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
                schema.create(connection, checkfirst=True)
                current = connection.execute(select(func.max(schema.c.version))).scalar() or 0
                if current > SCHEMA_VERSION:
                    raise CaptureStoreError(
                        f"capture database {self.url} has schema version {current}; this "
                        f"perception-llm knows up to {SCHEMA_VERSION} (upgrade perception-llm)"
                    )
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    MIGRATIONS[version - 1](connection)
                    connection.execute(insert(schema).values(version=version))
                return max(current, SCHEMA_VERSION)
        except SQLAlchemyError as error:
            raise CaptureStoreError(
                f"cannot use capture database {self.url}: {type(error).__name__}: "
                f"{str(error.orig if hasattr(error, 'orig') else error).splitlines()[0]}"
            ) from None

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(calls), [fit_row(row) for row in rows])

    def write_each(self, rows: Sequence[dict[str, Any]]) -> list[str]:
        """Write rows one by one (after a batch failed): why each row that failed did."""
        failures = []
        for row in rows:
            try:
                self.write([row])
            except SQLAlchemyError as error:
                failures.append(f"{type(error).__name__}: {str(error).splitlines()[0]}")
        return failures

    def prune(self, max_age_seconds: float, max_calls: int, max_bytes: int | None = None) -> int:
        """Delete calls older than the age limit, beyond the newest `max_calls`, and the oldest
        beyond `max_bytes` in all."""
        with self.engine.begin() as connection:
            removed = connection.execute(
                delete(calls).where(calls.c.started_at < time.time() - max_age_seconds)
            ).rowcount
            cutoff = connection.execute(
                select(calls.c.id).order_by(calls.c.id.desc()).offset(max_calls).limit(1)
            ).scalar()
            if max_bytes is not None:
                running = (
                    func.sum(func.coalesce(calls.c.stored_bytes, 0))
                    .over(order_by=calls.c.id.desc())
                    .label("running")
                )
                newest_first = select(calls.c.id, running).subquery()
                over = connection.execute(
                    select(func.max(newest_first.c.id)).where(newest_first.c.running > max_bytes)
                ).scalar()
                cutoff = over if cutoff is None or (over is not None and over > cutoff) else cutoff
            if cutoff is not None:
                removed += connection.execute(delete(calls).where(calls.c.id <= cutoff)).rowcount
        return int(removed or 0)

    def delete_conversation(self, conversation_id: str) -> int:
        """Remove every captured call of a conversation (a person's request to be forgotten)."""
        with self.engine.begin() as connection:
            where = calls.c.conversation_id == conversation_id
            return int(connection.execute(delete(calls).where(where)).rowcount or 0)

    def delete_older_than(self, seconds: float) -> int:
        with self.engine.begin() as connection:
            where = calls.c.started_at < time.time() - seconds
            return int(connection.execute(delete(calls).where(where)).rowcount or 0)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection for a read; a database that fails it (down, read-only, locked) is a
        CaptureStoreError, which the API answers with 503 (it was a 500)."""
        try:
            with self.engine.connect() as connection:
                yield connection
        except SQLAlchemyError as error:
            raise CaptureStoreError(
                f"cannot read capture database {self.url}: {type(error).__name__}"
            ) from None

    def conversations(self, limit: int = 100) -> list[dict[str, Any]]:
        """Conversations, newest activity first, with counts for the list view."""
        last = func.max(calls.c.started_at)
        query = (
            select(
                calls.c.conversation_id,
                func.count().label("calls"),
                func.min(calls.c.started_at).label("first_at"),
                last.label("last_at"),
                func.sum(calls.c.issues).label("issues"),
                # More than one: the conversation's requests did not all reach one replica.
                func.count(calls.c.replica.distinct()).label("replicas"),
            )
            .group_by(calls.c.conversation_id)
            .order_by(last.desc())
            .limit(limit)
        )
        with self._reading() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def calls_of(self, conversation_id: str | None, limit: int = 1000) -> list[dict[str, Any]]:
        """A conversation's calls in order, summaries only (no bodies)."""
        where = (
            calls.c.conversation_id.is_(None)
            if conversation_id is None
            else calls.c.conversation_id == conversation_id
        )
        query = select(*SUMMARY_COLUMNS).where(where).order_by(calls.c.id).limit(limit)
        with self._reading() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def call(self, call_id: int) -> dict[str, Any] | None:
        with self._reading() as connection:
            row = connection.execute(select(calls).where(calls.c.id == call_id)).first()
        return None if row is None else dict(row._mapping)

    def newest_id(self) -> int:
        with self._reading() as connection:
            return int(connection.execute(select(func.max(calls.c.id))).scalar() or 0)

    def dispose(self) -> None:
        self.engine.dispose()
