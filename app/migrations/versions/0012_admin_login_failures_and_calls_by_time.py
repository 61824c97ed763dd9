"""The admin pages: failed logins counted per operator and source address,
and calls by the time they were claimed for the dashboard.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    op.execute("""
CREATE TABLE IF NOT EXISTS login_failures (
  scope VARCHAR(80) CHARACTER SET ascii NOT NULL PRIMARY KEY,
  failures INT UNSIGNED NOT NULL,
  window_start TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB""")
    op.execute("CREATE INDEX IF NOT EXISTS calls_claimed_idx ON calls (claimed_at)")
