"""Phone-number targets behind carrier gateways, and per-buyer SIP headers:
the gateways table; a target's number, gateway and header templates (its
SIP URI may now be NULL); a reservation's rendered headers.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.execute("""
CREATE TABLE IF NOT EXISTS gateways (
  id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  host VARCHAR(255) CHARACTER SET ascii NOT NULL,
  port SMALLINT UNSIGNED NOT NULL DEFAULT 5060,
  transport VARCHAR(3) CHARACTER SET ascii NOT NULL DEFAULT 'udp',
  prefix VARCHAR(16) CHARACTER SET ascii NOT NULL DEFAULT '+',
  username VARCHAR(64) NULL,
  password VARCHAR(128) NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT gateways_name_uq UNIQUE (name),
  CONSTRAINT gateways_transport_ck CHECK (transport IN ('udp', 'tcp')),
  CONSTRAINT gateways_credentials_ck CHECK ((username IS NULL) = (password IS NULL))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""")
    op.execute("""
ALTER TABLE targets
  MODIFY sip_uri VARCHAR(255) NULL,
  ADD COLUMN number VARCHAR(16) NULL,
  ADD COLUMN gateway_id INT UNSIGNED NULL,
  ADD COLUMN sip_headers JSON NULL,
  ADD CONSTRAINT targets_gateway_fk FOREIGN KEY (gateway_id) REFERENCES gateways (id),
  ADD CONSTRAINT targets_one_destination_ck CHECK (sip_uri IS NULL OR number IS NULL),
  ADD CONSTRAINT targets_number_gateway_ck CHECK (number IS NULL OR gateway_id IS NOT NULL)""")
    op.execute("ALTER TABLE reservations ADD COLUMN sip_headers JSON NULL AFTER tags")
