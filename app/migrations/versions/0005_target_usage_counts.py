"""Caps read counters, not history: a row per target, period kind (hour,
day, month) and period start, with the target's settled charges in it. The
triggers on reservations keep it (they, like every routine, come from
schema.sql after the revisions), and schema.sql's block that follows them
counts the targets of an earlier database once, from history.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.execute("""
CREATE TABLE IF NOT EXISTS target_usage_counts (
  target_id INT UNSIGNED NOT NULL,
  period CHAR(1) CHARACTER SET ascii NOT NULL,
  starts_at DATETIME NOT NULL,
  charges INT NOT NULL,
  PRIMARY KEY (target_id, period, starts_at),
  INDEX target_usage_counts_starts_idx (starts_at),
  CONSTRAINT target_usage_counts_period_ck CHECK (period IN ('d', 'h', 'm')),
  CONSTRAINT target_usage_counts_target_fk FOREIGN KEY (target_id) REFERENCES targets (id)
    ON DELETE CASCADE
) ENGINE=InnoDB""")
