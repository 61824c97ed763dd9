"""Databases made before the baseline's last index changes catch up with it.

schema.sql only created what was missing, so a database made before commit
b887e73 kept reservations_target_charged_idx on (target_id, confirmed_at),
one made before f266094 has no calls_open_idx, and one made before 785da0a
still has the reservation_routes view. A database made by the baseline
itself has none of these, and this changes nothing in it.

Revision ID: 0002
Revises: 0001
"""

from alembic import op
from sqlalchemy import text

revision = "0002"
down_revision = "0001"

CHARGED_COLUMNS = "target_id,confirmed_at,status,expires_at"


def upgrade() -> None:
    columns = op.get_bind().scalar(text(
        "SELECT GROUP_CONCAT(column_name ORDER BY seq_in_index) FROM information_schema.statistics"
        " WHERE table_schema = DATABASE() AND table_name = 'reservations'"
        " AND index_name = 'reservations_target_charged_idx'"))
    if columns != CHARGED_COLUMNS:
        op.execute("ALTER TABLE reservations DROP INDEX IF EXISTS reservations_target_charged_idx,"
                   " ADD INDEX reservations_target_charged_idx"
                   " (target_id, confirmed_at, status, expires_at)")
    op.execute("CREATE INDEX IF NOT EXISTS calls_open_idx ON calls (ended_at, answered_at, claimed_at)")
    op.execute("DROP VIEW IF EXISTS reservation_routes")
