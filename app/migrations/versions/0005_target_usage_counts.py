"""Caps read counters, not history: a row per target with its settled
charges in its current hour, day and month. The triggers on reservations
keep it (they, like every routine, come from schema.sql after the
revisions), and schema.sql's closing block counts the targets of an earlier
database once, from history.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.execute("""
CREATE TABLE IF NOT EXISTS target_usage_counts (
  target_id INT UNSIGNED PRIMARY KEY,
  hour_start DATETIME NOT NULL,
  this_hour INT NOT NULL,
  day_start DATETIME NOT NULL,
  today INT NOT NULL,
  month_start DATETIME NOT NULL,
  this_month INT NOT NULL,
  CONSTRAINT target_usage_counts_target_fk FOREIGN KEY (target_id) REFERENCES targets (id)
    ON DELETE CASCADE
) ENGINE=InnoDB""")
