"""Upgrades in place: schema.sql builds a new database; Alembic revisions
(versions/) change the tables and indexes of an existing one; then
schema.sql's views and routines are replaced whole, and its idempotent
BEGIN NOT ATOMIC blocks run again, as Flyway's repeatable migrations are, so
their bodies live in schema.sql alone.

A database made before Alembic (the app's tables, no alembic_version) is
taken to be the previous release's, BASELINE, and upgraded from there.
upgrade() works on a connection of its own, and commits.
"""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text

from app.settings import PROJECT_DIR

SCHEMA = PROJECT_DIR / "schema.sql"
GRANTS = PROJECT_DIR / "grants.sql"
# The schema of the release before Alembic (commit a235b76).
BASELINE = "0001"
# A table every release has had: its presence tells an old database from an empty one.
APP_TABLE = "reservations"
# Run again after every upgrade: what schema.sql replaces whole, and its
# idempotent blocks (BEGIN NOT ATOMIC) that fill in what a new table needs.
REPEATABLE = re.compile(r"CREATE\s+OR\s+REPLACE\s+(VIEW|FUNCTION|PROCEDURE|TRIGGER)\b"
                        r"|BEGIN\s+NOT\s+ATOMIC\b", re.I)
# How long an upgrade waits for another one of the same database to finish.
LOCK_SECONDS = 120


def statements(sql: str) -> list[str]:
    """Split a file the `mariadb` client could run (DELIMITER included) into
    statements; whole-line comments are dropped, as the client drops them."""
    found, lines, delimiter = [], [], ";"
    for line in sql.splitlines():
        stripped = line.strip()
        if stripped.upper().startswith("DELIMITER "):
            delimiter = stripped.split()[1]
        elif stripped.startswith("--") or (not stripped and not lines):
            continue
        elif stripped.endswith(delimiter):
            lines.append(line.rstrip()[:-len(delimiter)])
            found.append("\n".join(lines).strip())
            lines = []
        else:
            lines.append(line)
    if "".join(lines).strip():
        raise ValueError(f"the SQL ends without a {delimiter!r}: {lines[0]!r}")
    return found


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, in code: no alembic.ini to find."""
    alembic_config = Config()
    alembic_config.set_main_option("script_location", str(Path(__file__).parent))
    alembic_config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    alembic_config.attributes["connection"] = connection
    return alembic_config


def head() -> str:
    return ScriptDirectory.from_config(config()).get_current_head()


def current(engine: Engine) -> str | None:
    """The revision the database is at; None before Alembic or when empty."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the database to head, whatever it was made by; returns head."""
    with engine.connect() as connection:
        lock = connection.scalar(text("SELECT GET_LOCK(CONCAT(DATABASE(), '.schema'), :s)"),
                                 {"s": LOCK_SECONDS})
        if lock != 1:
            raise RuntimeError("another upgrade of this database holds its lock")
        try:
            _upgrade(connection)
        except CommandError as error:
            raise RuntimeError(f"the schema cannot be upgraded: {error}") from None
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(CONCAT(DATABASE(), '.schema'))"))
            connection.commit()
    return head()


def _upgrade(connection: Connection) -> None:
    alembic_config = config(connection)
    tables = set(inspect(connection).get_table_names())
    schema = statements(SCHEMA.read_text())
    if APP_TABLE not in tables:
        _run(connection, schema)
        command.stamp(alembic_config, "head")
    else:
        if "alembic_version" not in tables:
            command.stamp(alembic_config, BASELINE)
        command.upgrade(alembic_config, "head")
    _run(connection, [s for s in schema if REPEATABLE.match(s)])


def _run(connection: Connection, sql: list[str]) -> None:
    # The DB-API cursor itself: no parameters, so the '%' of DATE_FORMAT stays as written.
    with connection.connection.cursor() as cursor:
        for statement in sql:
            cursor.execute(statement)
    connection.commit()


def edge_role() -> str:
    """The role grants.sql gives Kamailio's rights to, as that file names it."""
    return re.search(r"^CREATE ROLE IF NOT EXISTS (\w+);", GRANTS.read_text(), re.M).group(1)
