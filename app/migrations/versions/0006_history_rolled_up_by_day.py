"""History older than RTB_RETENTION_DAYS rolled up by day: ping_days and
reservation_days, which rtb_retain() (from schema.sql, like every routine)
fills as it deletes the detail rows, and the reports read.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.execute("""
CREATE TABLE IF NOT EXISTS ping_days (
  day DATE NOT NULL,
  key_id INT UNSIGNED NOT NULL,
  target_id INT UNSIGNED NOT NULL,
  outcome VARCHAR(16) CHARACTER SET ascii NOT NULL,
  reason VARCHAR(32) CHARACTER SET ascii NOT NULL,
  pings INT UNSIGNED NOT NULL,
  duration_ms DECIMAL(16, 3) NOT NULL,
  max_duration_ms DECIMAL(10, 3) NOT NULL,
  PRIMARY KEY (day, key_id, target_id, outcome, reason)
) ENGINE=InnoDB""")
    op.execute("""
CREATE TABLE IF NOT EXISTS reservation_days (
  day DATE NOT NULL,
  key_id INT UNSIGNED NOT NULL,
  publisher_id INT UNSIGNED NOT NULL,
  campaign_id INT UNSIGNED NOT NULL,
  target_id INT UNSIGNED NOT NULL,
  reservations INT UNSIGNED NOT NULL DEFAULT 0,
  calls INT UNSIGNED NOT NULL DEFAULT 0,
  answered INT UNSIGNED NOT NULL DEFAULT 0,
  converted INT UNSIGNED NOT NULL DEFAULT 0,
  talk_seconds DECIMAL(16, 3) NOT NULL DEFAULT 0,
  payout DECIMAL(14, 2) NOT NULL DEFAULT 0,
  PRIMARY KEY (day, key_id, publisher_id, campaign_id, target_id)
) ENGINE=InnoDB""")
