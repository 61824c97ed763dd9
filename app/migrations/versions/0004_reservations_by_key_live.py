"""Reservations by key, status and expiry: a key's pool numbers held at once
are counted on it. It also serves the key's foreign key, so the index InnoDB
made for that one alone goes.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS reservations_key_live_idx"
               " ON reservations (key_id, status, expires_at)")
    op.execute("DROP INDEX IF EXISTS reservations_key_fk ON reservations")
