-- schema.sql: the contract between the Flask app (which writes every table)
-- and Kamailio (which reads them and claims reservations).
--
-- Loading it again is harmless: every statement is idempotent.
-- Kamailio's own tables are exactly as /usr/share/kamailio/mysql/*.sql of
-- Kamailio 5.6 define them, plus extra columns (allowed: the version check
-- only compares the number in `version`).

-- ---------------------------------------------------------------- Kamailio

CREATE TABLE IF NOT EXISTS `version` (
  `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
  `table_name` VARCHAR(32) NOT NULL,
  `table_version` INT UNSIGNED DEFAULT 0 NOT NULL,
  CONSTRAINT table_name_idx UNIQUE (`table_name`)
) ENGINE=InnoDB;

INSERT IGNORE INTO `version` (table_name, table_version) VALUES
  ('version', 1),
  ('subscriber', 7),
  ('address', 6);

-- ------------------------------------------------------------------ market

CREATE TABLE IF NOT EXISTS publishers (
  id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(128) NOT NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT publishers_name_uq UNIQUE (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS campaigns (
  id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(128) NOT NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT campaigns_name_uq UNIQUE (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- A buyer destination. sip_uri never holds a comma: Kamailio's htable packs
-- its columns with commas.
CREATE TABLE IF NOT EXISTS targets (
  id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  campaign_id INT UNSIGNED NOT NULL,
  sip_uri VARCHAR(255) NOT NULL,
  payout DECIMAL(10, 2) NOT NULL,
  min_seconds INT UNSIGNED NOT NULL,
  enabled BOOLEAN NOT NULL DEFAULT TRUE,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT targets_campaign_fk FOREIGN KEY (campaign_id) REFERENCES campaigns (id),
  INDEX targets_campaign_idx (campaign_id, enabled, payout)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Only the SHA-256 of a postback key is stored; the key is shown once.
CREATE TABLE IF NOT EXISTS postback_keys (
  id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  key_hash CHAR(64) CHARACTER SET ascii NOT NULL,
  key_prefix CHAR(8) CHARACTER SET ascii NOT NULL,
  campaign_id INT UNSIGNED NOT NULL,
  publisher_id INT UNSIGNED NOT NULL,
  ttl_seconds INT UNSIGNED NOT NULL DEFAULT 60,
  inbound_number VARCHAR(16) NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT postback_keys_hash_uq UNIQUE (key_hash),
  CONSTRAINT postback_keys_campaign_fk FOREIGN KEY (campaign_id) REFERENCES campaigns (id),
  CONSTRAINT postback_keys_publisher_fk FOREIGN KEY (publisher_id) REFERENCES publishers (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Times are TIMESTAMP (stored as UTC) so that NOW() and UNIX_TIMESTAMP()
-- agree whatever time zone a client's session uses.
CREATE TABLE IF NOT EXISTS reservations (
  id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  uuid CHAR(36) CHARACTER SET ascii NOT NULL,
  key_id INT UNSIGNED NOT NULL,
  publisher_id INT UNSIGNED NOT NULL,
  campaign_id INT UNSIGNED NOT NULL,
  target_id INT UNSIGNED NOT NULL,
  caller_number VARCHAR(16) NULL,
  inbound_number VARCHAR(16) NULL,
  payout DECIMAL(10, 2) NOT NULL,
  min_seconds INT UNSIGNED NOT NULL,
  tags JSON NOT NULL,
  status VARCHAR(16) CHARACTER SET ascii NOT NULL DEFAULT 'reserved',
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  expires_at TIMESTAMP NOT NULL,
  -- Written by Kamailio when it lets a call through.
  claimed_at TIMESTAMP NULL DEFAULT NULL,
  call_id VARCHAR(255) NULL,
  claimed_from VARCHAR(64) NULL,
  CONSTRAINT reservations_uuid_uq UNIQUE (uuid),
  CONSTRAINT reservations_status_ck CHECK (status IN ('reserved', 'claimed')),
  CONSTRAINT reservations_key_fk FOREIGN KEY (key_id) REFERENCES postback_keys (id),
  CONSTRAINT reservations_publisher_fk FOREIGN KEY (publisher_id) REFERENCES publishers (id),
  CONSTRAINT reservations_campaign_fk FOREIGN KEY (campaign_id) REFERENCES campaigns (id),
  CONSTRAINT reservations_target_fk FOREIGN KEY (target_id) REFERENCES targets (id),
  INDEX reservations_live_idx (status, expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- --------------------------------------------------------- Kamailio tables

-- auth_db, table version 7. publisher_id is ours: auth_db's
-- load_credentials hands it to the config after a successful digest.
-- password stays empty: only HA1 is stored.
CREATE TABLE IF NOT EXISTS `subscriber` (
  `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
  `username` VARCHAR(64) DEFAULT '' NOT NULL,
  `domain` VARCHAR(64) DEFAULT '' NOT NULL,
  `password` VARCHAR(64) DEFAULT '' NOT NULL,
  `ha1` VARCHAR(128) DEFAULT '' NOT NULL,
  `ha1b` VARCHAR(128) DEFAULT '' NOT NULL,
  `publisher_id` INT UNSIGNED NULL,
  CONSTRAINT account_idx UNIQUE (`username`, `domain`),
  CONSTRAINT subscriber_publisher_fk FOREIGN KEY (`publisher_id`) REFERENCES publishers (id)
) ENGINE=InnoDB;

CREATE INDEX IF NOT EXISTS username_idx ON subscriber (`username`);

-- permissions, table version 6. Group 1 holds publishers; `tag` is
-- 'publisher:<id>', which allow_source_address() puts in $avp(peer_tag).
CREATE TABLE IF NOT EXISTS `address` (
  `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
  `grp` INT(11) UNSIGNED DEFAULT 1 NOT NULL,
  `ip_addr` VARCHAR(50) NOT NULL,
  `mask` INT DEFAULT 32 NOT NULL,
  `port` SMALLINT(5) UNSIGNED DEFAULT 0 NOT NULL,
  `tag` VARCHAR(64)
) ENGINE=InnoDB;

-- What the SIP edge needs to route a reservation: one row per reservation,
-- read on an htable miss. `destination` is the target's SIP URI;
-- expires_epoch is text because htable cannot pack a BIGINT column.
CREATE OR REPLACE VIEW reservation_routes AS
SELECT r.uuid,
       r.publisher_id,
       CAST(UNIX_TIMESTAMP(r.expires_at) AS CHAR) AS expires_epoch,
       t.sip_uri AS destination,
       r.status
FROM reservations r
JOIN targets t ON t.id = r.target_id;

-- The reservations still dialable: loaded into Kamailio's htable at start.
-- Its columns are packed into the htable value in this order.
CREATE OR REPLACE VIEW live_reservation_routes AS
SELECT r.uuid,
       r.publisher_id,
       CAST(UNIX_TIMESTAMP(r.expires_at) AS CHAR) AS expires_epoch,
       t.sip_uri AS destination
FROM reservations r
JOIN targets t ON t.id = r.target_id
WHERE r.status = 'reserved' AND r.expires_at > NOW();
