"""Calls are named by their id and a token, and one Call-ID has one open call.

The token a claim returns to the edge, and the open_call_id column whose
unique index refuses a second open call with the same Call-ID. A call still
open from before the upgrade has an empty token: its events can no longer
be recorded, so it ends as the expiry sweep ends calls the edge lost.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.execute("ALTER TABLE calls"
               " ADD COLUMN IF NOT EXISTS token CHAR(32) CHARACTER SET ascii NOT NULL DEFAULT ''"
               " AFTER converted,"
               " ADD COLUMN IF NOT EXISTS open_call_id VARCHAR(255)"
               " AS (IF(ended_at IS NULL, call_id, NULL)) PERSISTENT AFTER token")
    op.execute("CREATE UNIQUE INDEX IF NOT EXISTS calls_open_call_id_uq ON calls (open_call_id)")
