"""Operator accounts (a password hash and an API token hash each), and the
ping log's index by time for the owner's log over HTTP.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.execute("""
CREATE TABLE IF NOT EXISTS operators (
  id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  password_hash VARCHAR(255) NOT NULL,
  token_hash CHAR(64) CHARACTER SET ascii NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT operators_name_uq UNIQUE (name),
  CONSTRAINT operators_token_uq UNIQUE (token_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""")
    op.execute("CREATE INDEX IF NOT EXISTS pings_time_idx ON pings (created_at)")
