"""Conversion postbacks: each key's postback URL and signing secret, and the
queue of calls' ends to post (the trigger that fills it, and rtb_retain's
pruning of it, come from schema.sql after the revisions).

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.execute("""
ALTER TABLE postback_keys
  ADD COLUMN IF NOT EXISTS postback_url VARCHAR(2048) NULL,
  ADD COLUMN IF NOT EXISTS postback_secret CHAR(64) CHARACTER SET ascii NULL""")
    # Keys made before sign with a secret no one has seen yet: an operator
    # shows it with `rtbctl key edit KEY --new-postback-secret`.
    op.execute("UPDATE postback_keys SET postback_secret = LOWER(HEX(RANDOM_BYTES(32)))"
               " WHERE postback_secret IS NULL")
    op.execute("""
CREATE TABLE IF NOT EXISTS postbacks (
  id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  call_row_id BIGINT UNSIGNED NOT NULL,
  key_id INT UNSIGNED NOT NULL,
  state VARCHAR(16) CHARACTER SET ascii NOT NULL DEFAULT 'pending',
  attempts INT UNSIGNED NOT NULL DEFAULT 0,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  next_attempt_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  delivered_at TIMESTAMP(3) NULL DEFAULT NULL,
  last_error VARCHAR(255) NULL,
  CONSTRAINT postbacks_call_uq UNIQUE (call_row_id),
  CONSTRAINT postbacks_state_ck CHECK (state IN ('pending', 'delivered', 'failed')),
  CONSTRAINT postbacks_key_fk FOREIGN KEY (key_id) REFERENCES postback_keys (id),
  INDEX postbacks_due_idx (state, next_attempt_at),
  INDEX postbacks_created_idx (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""")
