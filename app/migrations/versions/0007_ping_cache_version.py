"""A number every change to a target or a postback key moves (their
triggers come from schema.sql after the revisions): web workers cache keys
and targets, and rtb_ping tells a worker whose cache is older than it.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.execute("""
CREATE TABLE IF NOT EXISTS ping_cache_version (
  id TINYINT UNSIGNED PRIMARY KEY,
  version BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB""")
    op.execute("INSERT IGNORE INTO ping_cache_version VALUES (1, 0)")
