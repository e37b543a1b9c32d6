"""The capture database's schema: the captured calls, the experiment tables (`perception-llm
eval`), and the numbered migrations that bring an older database up to date.

Version n is reached by running MIGRATIONS[n - 1], in order, at start-up (server/capture/store.py
runs them under a lock); append a step, never edit a shipped one. v1 creates `captured_calls`
from today's definition, so every later step checks whether its column is already there.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)

metadata = MetaData()

schema = Table("capture_schema", metadata, Column("version", Integer, nullable=False))

calls = Table(
    "captured_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("replica", String(128), nullable=True),  # which replica served it (schema v2)
    Column("conversation_id", String(256), nullable=True, index=True),
    Column("started_at", Float, nullable=False, index=True),  # unix seconds
    Column("template", String(128), nullable=False),
    Column("model", String(256), nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("total_ms", Float, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("shared", Boolean, nullable=False),
    Column("error", Text, nullable=True),
    Column("issues", Integer, nullable=False),  # parse issues, for the list view
    Column("unknown_tags", Text, nullable=False),  # comma-separated unknown <user_*> tags
    Column("user_text", Text, nullable=False),  # the newest user turn, for the list view
    Column("perceived", Text, nullable=False),  # JSON: the latest snapshot, short, for the timeline
    Column("headers", Text, nullable=False),  # JSON: allow-listed request headers
    Column("request", Text, nullable=False),  # JSON: the body as received (privacy applied)
    Column("parsed", Text, nullable=False),  # JSON: mode, observations, issues, instructions
    Column("prompt", Text, nullable=False),  # JSON: template, messages, tokens, what was dropped
    Column("reply", Text, nullable=False),  # JSON: text, tool calls, finish reason
    # Which of our own tools sent the call (`simulate`, `compare`, `eval`: their
    # `X-Perception-LLM-Tool` header), so experiments and statistics skip them; null: a client.
    Column("tool", String(32), nullable=True),
    # The reply's Phoenix-4 emotion tag was inserted or corrected (null: recorded before v2).
    Column("emotion_repaired", Boolean, nullable=True),
    Column("stored_bytes", Integer, nullable=True),  # UTF-8 size of the row (schema v4)
)

# Experiments (`perception-llm eval`, issue 25): runs, one row per reply with its assertions,
# and the reply cache that makes an unchanged rerun free.
eval_runs = Table(
    "eval_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", Float, nullable=False, index=True),
    Column("seconds", Float, nullable=False),
    Column("suite", String(256), nullable=False),  # its name
    Column("status", String(16), nullable=False),  # passed, failed, incomplete
    Column("target", String(512), nullable=False),  # in-process, or the --url
    Column("summary", Text, nullable=False),  # JSON: the matrix rows, calls, cache hits
)
eval_replies = Table(
    "eval_replies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, nullable=False, index=True),
    Column("test", String(256), nullable=False),
    Column("template", String(256), nullable=False),
    Column("model", String(256), nullable=False),
    Column("sample", Integer, nullable=False),
    Column("cached", Boolean, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("reply", Text, nullable=False),
    Column("prompt", Text, nullable=False),  # JSON: the exact messages the model got
    Column("assertions", Text, nullable=False),  # JSON: type, passed, reason, score, error
)
eval_cache = Table(
    "eval_cache",
    metadata,
    Column("key", String(64), primary_key=True),  # SHA-256 of what the reply depends on
    Column("created_at", Float, nullable=False),
    Column("value", Text, nullable=False),  # JSON
)
EXPERIMENT_TABLES = (eval_runs, eval_replies, eval_cache)

SUMMARY_COLUMNS = [c for c in calls.c if c.name not in ("headers", "request", "parsed", "prompt")]


def add_replica_column(connection: Connection) -> None:
    """v2: `replica`, which replica served the call (issue 26). v1 creates the table from the
    current definition, so a new database has it already; a v1 database gains it here."""
    if "replica" not in {column["name"] for column in inspect(connection).get_columns(calls.name)}:
        connection.execute(text("ALTER TABLE captured_calls ADD COLUMN replica VARCHAR(128)"))


def _add_tool_column_and_experiments(connection: Connection) -> None:
    """v3 (issue 25): the `tool` mark and `emotion_repaired` on captured calls, and the
    experiment tables."""
    # v1 creates the table from today's definition, so a fresh database has the columns already.
    present = {column["name"] for column in inspect(connection).get_columns(calls.name)}
    for name, kind in (("tool", "VARCHAR(32)"), ("emotion_repaired", "BOOLEAN")):
        if name not in present:
            connection.execute(text(f"ALTER TABLE {calls.name} ADD COLUMN {name} {kind}"))
    for table in EXPERIMENT_TABLES:
        table.create(connection, checkfirst=True)


def _add_stored_bytes(connection: Connection) -> None:
    # v1 databases lack the column; a database created by this code has it already.
    if "stored_bytes" not in {c["name"] for c in inspect(connection).get_columns(calls.name)}:
        connection.execute(text("ALTER TABLE captured_calls ADD COLUMN stored_bytes INTEGER"))


# Version n is reached by running MIGRATIONS[n - 1]; append, never edit a shipped one.
MIGRATIONS: list[Callable[[Connection], None]] = [
    lambda connection: calls.create(connection, checkfirst=True),
    add_replica_column,
    _add_tool_column_and_experiments,
    _add_stored_bytes,  # v4: each row's size, for the total size cap (issue 23)
]
SCHEMA_VERSION = len(MIGRATIONS)
MIGRATION_LOCK = 0x7065_7263_6C6C6D  # a constant key for PostgreSQL's advisory lock ("percllm")
