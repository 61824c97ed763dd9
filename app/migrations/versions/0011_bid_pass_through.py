"""Pass-through targets that bid live: a target's bid URL and how to read
its answer, a campaign's margin on live bids, and `bids`, what each buyer
answered each ping (rtb_ping and rtb_confirm, from schema.sql, read it).

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.execute("""
ALTER TABLE campaigns
  ADD COLUMN IF NOT EXISTS margin_percent DECIMAL(5, 2) NULL,
  ADD COLUMN IF NOT EXISTS margin_amount DECIMAL(10, 2) NULL,
  ADD COLUMN IF NOT EXISTS min_margin DECIMAL(10, 2) NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS allow_loss BOOLEAN NOT NULL DEFAULT FALSE""")
    op.execute("""
ALTER TABLE targets
  MODIFY sip_uri VARCHAR(255) NULL,
  ADD COLUMN IF NOT EXISTS bid_url VARCHAR(2048) NULL,
  ADD COLUMN IF NOT EXISTS bid_method VARCHAR(4) CHARACTER SET ascii NOT NULL DEFAULT 'POST',
  ADD COLUMN IF NOT EXISTS bid_timeout_ms INT UNSIGNED NOT NULL DEFAULT 300,
  ADD COLUMN IF NOT EXISTS bid_body TEXT NULL,
  ADD COLUMN IF NOT EXISTS bid_headers JSON NULL,
  ADD COLUMN IF NOT EXISTS max_bid DECIMAL(10, 2) NULL,
  ADD COLUMN IF NOT EXISTS bid_fields JSON NULL,
  ADD CONSTRAINT IF NOT EXISTS targets_bid_method_ck CHECK (bid_method IN ('GET', 'POST'))""")
    op.execute("""
CREATE TABLE IF NOT EXISTS bids (
  uuid CHAR(36) CHARACTER SET ascii NOT NULL,
  target_id INT UNSIGNED NOT NULL,
  key_id INT UNSIGNED NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  outcome VARCHAR(8) CHARACTER SET ascii NOT NULL,
  reason VARCHAR(32) CHARACTER SET ascii NULL,
  duration_ms DECIMAL(10, 3) NOT NULL,
  amount DECIMAL(10, 2) NULL,
  payout DECIMAL(10, 2) NULL,
  min_seconds INT UNSIGNED NULL,
  bid_id VARCHAR(255) NULL,
  destination VARCHAR(255) NULL,
  expires_at TIMESTAMP NULL DEFAULT NULL,
  PRIMARY KEY (uuid, target_id),
  CONSTRAINT bids_outcome_ck CHECK (outcome IN ('bid', 'no_bid', 'timeout', 'error', 'over_max')),
  CONSTRAINT bids_target_fk FOREIGN KEY (target_id) REFERENCES targets (id),
  CONSTRAINT bids_key_fk FOREIGN KEY (key_id) REFERENCES postback_keys (id),
  INDEX bids_key_time_idx (key_id, created_at)
) ENGINE=InnoDB""")
