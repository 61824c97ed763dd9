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

-- fallback_sip_uri takes carriers' calls to the campaign's numbers that
-- match no reservation (NULL: they are refused with 404).
-- The margin kept from a live bid (app/bidding.py): margin_percent of it,
-- or margin_amount, and at least min_margin; the publisher's payout is the
-- rest. A bid that does not cover the margin takes no call without allow_loss.
CREATE TABLE IF NOT EXISTS campaigns (
  id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(128) NOT NULL,
  fallback_sip_uri VARCHAR(255) NULL,
  margin_percent DECIMAL(5, 2) NULL,
  margin_amount DECIMAL(10, 2) NULL,
  min_margin DECIMAL(10, 2) NOT NULL DEFAULT 0,
  allow_loss BOOLEAN NOT NULL DEFAULT FALSE,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT campaigns_name_uq UNIQUE (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- A carrier gateway that reaches buyers' phone numbers: a call for number
-- N goes to sip:<prefix><N's digits>@host:port (rtb_gateway_uri), and the
-- gateway's digest challenge is answered with username and password, which
-- the edge reads only through rtb_gateway_auth(), for a call it claimed.
-- prefix '+' (the default) sends the E.164 number itself.
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
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- A buyer destination: a SIP URI, or a phone number (E.164) behind a
-- gateway, or (a pass-through target) a bid_url: each ping asks it for a
-- live bid (app/bidding.py), whose answer names the destination.
-- sip_headers: the headers the buyer's INVITE carries, as
-- [["Name", "template"], ...] (app/sip_headers.py). A NULL cap is no cap;
-- hours NULL is always open; states, zips (prefixes) NULL and tag_rules
-- NULL match every caller.
CREATE TABLE IF NOT EXISTS targets (
  id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  campaign_id INT UNSIGNED NOT NULL,
  sip_uri VARCHAR(255) NULL,
  number VARCHAR(16) NULL,
  gateway_id INT UNSIGNED NULL,
  sip_headers JSON NULL,
  payout DECIMAL(10, 2) NOT NULL,
  min_seconds INT UNSIGNED NOT NULL,
  enabled BOOLEAN NOT NULL DEFAULT TRUE,
  priority INT UNSIGNED NOT NULL DEFAULT 1,
  weight INT UNSIGNED NOT NULL DEFAULT 1,
  concurrency_cap INT UNSIGNED NULL,
  hourly_cap INT UNSIGNED NULL,
  daily_cap INT UNSIGNED NULL,
  monthly_cap INT UNSIGNED NULL,
  hours VARCHAR(255) NULL,
  timezone VARCHAR(64) NOT NULL DEFAULT 'UTC',
  states VARCHAR(255) NULL,
  zips VARCHAR(1024) NULL,
  tag_rules JSON NULL,
  bid_url VARCHAR(2048) NULL,
  bid_method VARCHAR(4) CHARACTER SET ascii NOT NULL DEFAULT 'POST',
  bid_timeout_ms INT UNSIGNED NOT NULL DEFAULT 300,
  bid_body TEXT NULL,
  bid_headers JSON NULL,
  max_bid DECIMAL(10, 2) NULL,
  bid_fields JSON NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT targets_bid_method_ck CHECK (bid_method IN ('GET', 'POST')),
  CONSTRAINT targets_campaign_fk FOREIGN KEY (campaign_id) REFERENCES campaigns (id),
  CONSTRAINT targets_gateway_fk FOREIGN KEY (gateway_id) REFERENCES gateways (id),
  CONSTRAINT targets_one_destination_ck CHECK (sip_uri IS NULL OR number IS NULL),
  CONSTRAINT targets_number_gateway_ck CHECK (number IS NULL OR gateway_id IS NOT NULL),
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
  auto_confirm BOOLEAN NOT NULL DEFAULT FALSE,
  duplicate_scope VARCHAR(8) CHARACTER SET ascii NOT NULL DEFAULT 'key',
  rate_limit INT UNSIGNED NULL,
  require_caller_number BOOLEAN NOT NULL DEFAULT FALSE,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  -- Where a call's end is posted (app/postbacks), and the secret its body
  -- is signed with: kept as is, as signing needs it (Kamailio cannot read
  -- this table).
  postback_url VARCHAR(2048) NULL,
  postback_secret CHAR(64) CHARACTER SET ascii NULL,
  CONSTRAINT postback_keys_hash_uq UNIQUE (key_hash),
  CONSTRAINT postback_keys_scope_ck CHECK (duplicate_scope IN ('key', 'campaign')),
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
  -- The SIP headers each candidate target's INVITE carries, rendered for
  -- this caller when the reservation was made: {"<target id>": "Name: value\r\n..."}.
  sip_headers JSON NULL,
  status VARCHAR(16) CHARACTER SET ascii NOT NULL DEFAULT 'reserved',
  -- Target ids to try, best first, when the call arrives unconfirmed.
  candidates VARCHAR(255) CHARACTER SET ascii NOT NULL DEFAULT '',
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  expires_at TIMESTAMP NOT NULL,
  confirmed_at TIMESTAMP NULL DEFAULT NULL,
  CONSTRAINT reservations_uuid_uq UNIQUE (uuid),
  CONSTRAINT reservations_status_ck
    CHECK (status IN ('reserved', 'confirmed', 'claimed', 'completed', 'no-target', 'expired')),
  CONSTRAINT reservations_key_fk FOREIGN KEY (key_id) REFERENCES postback_keys (id),
  CONSTRAINT reservations_publisher_fk FOREIGN KEY (publisher_id) REFERENCES publishers (id),
  CONSTRAINT reservations_campaign_fk FOREIGN KEY (campaign_id) REFERENCES campaigns (id),
  CONSTRAINT reservations_target_fk FOREIGN KEY (target_id) REFERENCES targets (id),
  INDEX reservations_live_idx (status, expires_at),
  -- The pool numbers a key's live reservations hold (RTB_MAX_HELD_NUMBERS).
  INDEX reservations_key_live_idx (key_id, status, expires_at),
  INDEX reservations_pstn_idx (inbound_number, caller_number, status),
  INDEX reservations_target_live_idx (target_id, status, expires_at),
  -- Covers the counts in target_usage_recount: no row is read to count one.
  INDEX reservations_target_charged_idx (target_id, confirmed_at, status, expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Carriers deliver PSTN calls for our numbers; their addresses are in
-- `address`, group 2, tag 'carrier:<id>'.
CREATE TABLE IF NOT EXISTS carriers (
  id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(128) NOT NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT carriers_name_uq UNIQUE (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The pool of inbound numbers (E.164), for one campaign or (NULL) any. A
-- number is shared by reservations with caller numbers (a call is matched
-- by dialled number plus caller ID), or held by one reservation without a
-- caller number until held_until (its expiry, or the end of its call).
CREATE TABLE IF NOT EXISTS numbers (
  number VARCHAR(16) PRIMARY KEY,
  campaign_id INT UNSIGNED NULL,
  held_by BIGINT UNSIGNED NULL,
  held_until TIMESTAMP NULL DEFAULT NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT numbers_campaign_fk FOREIGN KEY (campaign_id) REFERENCES campaigns (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Every call let through for a reservation, written by the procedures
-- Kamailio calls: claimed, answered (200 OK), ended (BYE, failure, timeout).
-- A call that fails before answer gives the reservation back to the
-- publisher; one that was answered uses it up, and is converted when its
-- talk time reaches the reservation's min_seconds.
-- Events name a call by its id and the random token its claim returned to
-- the edge alone. One Call-ID has one open call at a time (open_call_id):
-- a second claim with it is refused, so no event can land on the wrong call.
CREATE TABLE IF NOT EXISTS calls (
  id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  reservation_id BIGINT UNSIGNED NOT NULL,
  target_id INT UNSIGNED NOT NULL,
  call_id VARCHAR(255) NOT NULL,
  via VARCHAR(4) CHARACTER SET ascii NOT NULL DEFAULT 'sip',
  source VARCHAR(64) NOT NULL,
  claimed_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  answered_at TIMESTAMP(3) NULL DEFAULT NULL,
  ended_at TIMESTAMP(3) NULL DEFAULT NULL,
  talk_seconds DECIMAL(10, 3) NULL,
  final_status SMALLINT UNSIGNED NULL,
  converted BOOLEAN NOT NULL DEFAULT FALSE,
  token CHAR(32) CHARACTER SET ascii NOT NULL DEFAULT '',
  open_call_id VARCHAR(255) AS (IF(ended_at IS NULL, call_id, NULL)) PERSISTENT,
  CONSTRAINT calls_open_call_id_uq UNIQUE (open_call_id),
  CONSTRAINT calls_reservation_fk FOREIGN KEY (reservation_id) REFERENCES reservations (id),
  CONSTRAINT calls_target_fk FOREIGN KEY (target_id) REFERENCES targets (id),
  INDEX calls_call_id_idx (call_id),
  INDEX calls_target_live_idx (target_id, ended_at),
  INDEX calls_open_idx (ended_at, answered_at, claimed_at),
  -- The admin dashboard's calls of the last hour and day.
  INDEX calls_claimed_idx (claimed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- A call's end to post to its key's postback_url: queued by the trigger
-- calls_postback in the transaction that ends the call, delivered at least
-- once by the postback worker. A worker claims a due row by moving
-- next_attempt_at past its request's timeout (a worker that dies mid-way
-- leaves it due again); 'delivered' on a 2xx, 'failed' once retrying would
-- pass RTB_POSTBACK_GIVE_UP_SECONDS.
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
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- At most one live reservation per caller in a scope: for Ping Shield
-- 'k<key id>' or 'c<campaign id>', and 'n<number>' for the pool number a
-- caller's reservation shares. The row's lock serialises pings for the same
-- caller, so two racing pings cannot both take it.
CREATE TABLE IF NOT EXISTS caller_reservations (
  scope VARCHAR(16) CHARACTER SET ascii NOT NULL,
  caller_number VARCHAR(16) NOT NULL,
  reservation_id BIGINT UNSIGNED NULL,
  PRIMARY KEY (scope, caller_number)
) ENGINE=InnoDB;

-- A key's pings in the current one-second window, for its rate limit.
CREATE TABLE IF NOT EXISTS key_rate_windows (
  key_id INT UNSIGNED PRIMARY KEY,
  window_start BIGINT NOT NULL,
  pings INT UNSIGNED NOT NULL,
  CONSTRAINT key_rate_windows_key_fk FOREIGN KEY (key_id) REFERENCES postback_keys (id)
) ENGINE=InnoDB;

-- What each pass-through target answered a ping, named by the ping's uuid
-- (its reservation's, when it made one): outcome, reason (of an error or a
-- bid that takes no call) and milliseconds taken. A bid that may take the
-- call has a payout (its amount less the campaign's margin): rtb_ping and
-- rtb_confirm give the reservation its payout, seconds, expiry and
-- destination when that target is the one chosen.
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
) ENGINE=InnoDB;

-- Every ping with a valid key: what it answered and why.
CREATE TABLE IF NOT EXISTS pings (
  id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  key_id INT UNSIGNED NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  outcome VARCHAR(16) CHARACTER SET ascii NOT NULL,
  reason VARCHAR(32) CHARACTER SET ascii NULL,
  reservation_id BIGINT UNSIGNED NULL,
  duration_ms DECIMAL(10, 3) NOT NULL,
  CONSTRAINT pings_key_fk FOREIGN KEY (key_id) REFERENCES postback_keys (id),
  INDEX pings_key_time_idx (key_id, created_at),
  -- The owner's log (GET /api/v1/rtb_inbounds.json), newest first, by time.
  INDEX pings_time_idx (created_at)
) ENGINE=InnoDB;

-- History older than RTB_RETENTION_DAYS, rolled up by rtb_retain() into
-- counts per UTC day, key and target (0: a ping that reserved nothing),
-- which `rtbctl report` and `rtbctl pings` add to the rows still kept.
-- ping_days: pings by outcome and reason ('': none), with the sum and the
-- longest of their durations.
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
) ENGINE=InnoDB;

-- reservation_days: reservations by the day they were made, and calls (with
-- their answers, conversions, talk time and the payout earned) by the day
-- they were claimed, each under the target it was for.
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
) ENGINE=InnoDB;

-- One number that every change to a target or a postback key moves (the
-- triggers below): each web worker caches keys and targets with the number
-- it read, and rtb_ping answers 'stale' to a ping that names another, so an
-- edit takes effect on the next ping.
CREATE TABLE IF NOT EXISTS ping_cache_version (
  id TINYINT UNSIGNED PRIMARY KEY,
  version BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB;

INSERT IGNORE INTO ping_cache_version VALUES (1, 0);

-- The people who run this instance (rtbctl operator): a salted slow hash
-- of the password, and the SHA-256 of the one API token each may hold.
CREATE TABLE IF NOT EXISTS operators (
  id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  password_hash VARCHAR(255) NOT NULL,
  token_hash CHAR(64) CHARACTER SET ascii NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT operators_name_uq UNIQUE (name),
  CONSTRAINT operators_token_uq UNIQUE (token_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Failed logins to the admin pages, counted per scope ('n:<operator name>'
-- or 'a:<source address>') in a window that starts with the first failure.
-- The row's lock orders racing attempts from gunicorn's workers: each counts
-- itself here first, and is refused once a scope is over its limit.
CREATE TABLE IF NOT EXISTS login_failures (
  scope VARCHAR(80) CHARACTER SET ascii NOT NULL PRIMARY KEY,
  failures INT UNSIGNED NOT NULL,
  window_start TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB;

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

-- The reservations still dialable: loaded into Kamailio's htable at start.
-- Its columns are packed into the htable value in this order; expires_epoch
-- is text because htable cannot pack a BIGINT column.
CREATE OR REPLACE VIEW live_reservation_routes AS
SELECT uuid, publisher_id, CAST(UNIX_TIMESTAMP(expires_at) AS CHAR) AS expires_epoch
FROM reservations
WHERE status IN ('reserved', 'confirmed') AND expires_at > NOW();

-- ------------------------------------------------------ caps and confirming

-- Reservations charged to their target: a call came of them, or they are
-- confirmed and still dialable (one that expired unused frees its charge).
CREATE OR REPLACE VIEW charged_reservations AS
SELECT target_id, confirmed_at
FROM reservations
WHERE confirmed_at IS NOT NULL
  AND (status IN ('claimed', 'completed') OR (status = 'confirmed' AND expires_at > NOW()));

-- The current hour, day and month of each target's time zone, as UTC
-- instants (named zones need the server's time zone tables, which the
-- private database loads; without them periods are taken in UTC). Read
-- with the session time zone at UTC.
CREATE OR REPLACE VIEW target_periods AS
SELECT target_id,
       CONVERT_TZ(DATE_FORMAT(local_now, '%Y-%m-%d %H:00:00'), zone, '+00:00') AS hour_start,
       CONVERT_TZ(DATE_FORMAT(local_now, '%Y-%m-%d 00:00:00'), zone, '+00:00') AS day_start,
       CONVERT_TZ(DATE_FORMAT(local_now, '%Y-%m-01 00:00:00'), zone, '+00:00') AS month_start
FROM (SELECT id AS target_id, zone, CONVERT_TZ(UTC_TIMESTAMP(), '+00:00', zone) AS local_now
      FROM (SELECT id, IF(CONVERT_TZ(UTC_TIMESTAMP(), '+00:00', timezone) IS NULL,
                          '+00:00', timezone) AS zone
            FROM targets) zones) clocks;

-- The truth the counters below are checked against (`rtbctl usage --check`):
-- each target's charges in its current hour, day and month, counted from
-- history. Costs a scan of the target's history; nothing on a ping reads it.
CREATE OR REPLACE VIEW target_usage_recount AS
SELECT p.target_id,
       (SELECT COUNT(*) FROM charged_reservations r WHERE r.target_id = p.target_id
          AND r.confirmed_at >= p.hour_start) AS this_hour,
       (SELECT COUNT(*) FROM charged_reservations r WHERE r.target_id = p.target_id
          AND r.confirmed_at >= p.day_start) AS today,
       (SELECT COUNT(*) FROM charged_reservations r WHERE r.target_id = p.target_id
          AND r.confirmed_at >= p.month_start) AS this_month
FROM target_periods p;

-- A target's settled charges (reservations confirmed and then called:
-- 'claimed' or 'completed') per period: `period` is 'h', 'd' or 'm', the
-- hour, day or month of the target's time zone that starts at starts_at
-- (UTC). The triggers on reservations keep the rows in step, in the
-- transaction that changes a reservation, whichever statement does it. A row
-- per period, not one per target overwritten when a period ends: a claim
-- whose statement began just before the hour, granted the target's lock just
-- after a claim of the new hour, still reads and charges its own hour.
-- Charges still 'confirmed' are not in here: they stop counting the moment
-- they expire, which no counter could follow without lagging behind the
-- expiry sweep, so target_usage counts those live rows directly.
CREATE TABLE IF NOT EXISTS target_usage_counts (
  target_id INT UNSIGNED NOT NULL,
  period CHAR(1) CHARACTER SET ascii NOT NULL,
  starts_at DATETIME NOT NULL,
  charges INT NOT NULL,
  PRIMARY KEY (target_id, period, starts_at),
  -- rtb_retain() deletes the rows of periods long over through it.
  INDEX target_usage_counts_starts_idx (starts_at),
  CONSTRAINT target_usage_counts_period_ck CHECK (period IN ('d', 'h', 'm')),
  CONSTRAINT target_usage_counts_target_fk FOREIGN KEY (target_id) REFERENCES targets (id)
    ON DELETE CASCADE
) ENGINE=InnoDB;

-- What each target has taken against its caps, reading a constant number of
-- rows per target whatever its history: `live` holds its concurrency
-- (confirmed and not expired, or a call not yet ended), counted through
-- index ranges that hold only live rows; the others add the confirmations
-- still live in each period to the counters' settled charges. Exact at every
-- instant, equal to target_usage_recount. The live rows are read through
-- the target's live index by force: left to choose, MariaDB may walk
-- reservations_target_charged_idx through a month of charges instead.
-- Read with the session time zone at UTC. No stored function here: a
-- statement calling one reads with shared locks, and pings must not lock
-- reservations.
CREATE OR REPLACE VIEW target_usage AS
SELECT p.target_id,
       (SELECT COUNT(*) FROM reservations r FORCE INDEX (reservations_target_live_idx)
         WHERE r.target_id = p.target_id AND r.status = 'confirmed' AND r.expires_at > NOW())
       + (SELECT COUNT(*) FROM calls c WHERE c.target_id = p.target_id AND c.ended_at IS NULL)
         AS live,
       IFNULL(h.charges, 0)
       + (SELECT COUNT(*) FROM reservations r FORCE INDEX (reservations_target_live_idx)
           WHERE r.target_id = p.target_id AND r.status = 'confirmed' AND r.expires_at > NOW()
             AND r.confirmed_at >= p.hour_start) AS this_hour,
       IFNULL(d.charges, 0)
       + (SELECT COUNT(*) FROM reservations r FORCE INDEX (reservations_target_live_idx)
           WHERE r.target_id = p.target_id AND r.status = 'confirmed' AND r.expires_at > NOW()
             AND r.confirmed_at >= p.day_start) AS today,
       IFNULL(m.charges, 0)
       + (SELECT COUNT(*) FROM reservations r FORCE INDEX (reservations_target_live_idx)
           WHERE r.target_id = p.target_id AND r.status = 'confirmed' AND r.expires_at > NOW()
             AND r.confirmed_at >= p.month_start) AS this_month
FROM target_periods p
LEFT JOIN target_usage_counts d
  ON d.target_id = p.target_id AND d.period = 'd' AND d.starts_at = p.day_start
LEFT JOIN target_usage_counts h
  ON h.target_id = p.target_id AND h.period = 'h' AND h.starts_at = p.hour_start
LEFT JOIN target_usage_counts m
  ON m.target_id = p.target_id AND m.period = 'm' AND m.starts_at = p.month_start;

DELIMITER //

-- '+1 (800) 555-0100', '18005550100', '8005550100' and 'tel:+18005550100'
-- all become '+18005550100': ten digits without a '+' are a NANP number,
-- others are E.164 ('+49 30 901820' too), as app/phone.py reads them.
CREATE OR REPLACE FUNCTION rtb_e164(p_raw VARCHAR(64)) RETURNS VARCHAR(16)
DETERMINISTIC NO SQL
BEGIN
  DECLARE v_digits VARCHAR(64) DEFAULT REGEXP_REPLACE(p_raw, '[^0-9]', '');
  RETURN LEFT(CONCAT('+', IF(LENGTH(v_digits) = 10 AND LOCATE('+', p_raw) = 0,
                             CONCAT('1', v_digits), v_digits)), 16);
END //

-- Add p_delta (1: a charge, -1: its release) to a target's counters for a
-- settled charge confirmed at p_at (Unix time): the rows of its hour, day and
-- month, locked in the primary key's order (d, h, m) by every writer. One
-- older than any month that can still be current (32 days, whatever the
-- zone) returns at once: deleting old history locks no counter.
CREATE OR REPLACE PROCEDURE rtb_usage_charge(
  IN p_target INT UNSIGNED, IN p_at BIGINT, IN p_delta INT)
MODIFIES SQL DATA
this_proc: BEGIN
  DECLARE v_at DATETIME DEFAULT '1970-01-01' + INTERVAL p_at SECOND;
  DECLARE v_zone VARCHAR(64);
  DECLARE v_local DATETIME;
  DECLARE v_hour, v_day, v_month DATETIME;
  IF p_at < UNIX_TIMESTAMP() - 32 * 86400 THEN
    LEAVE this_proc;
  END IF;
  SELECT IF(CONVERT_TZ(v_at, '+00:00', timezone) IS NULL, '+00:00', timezone) INTO v_zone
    FROM targets WHERE id = p_target;
  SET v_local = CONVERT_TZ(v_at, '+00:00', v_zone);
  SET v_hour = CONVERT_TZ(DATE_FORMAT(v_local, '%Y-%m-%d %H:00:00'), v_zone, '+00:00'),
      v_day = CONVERT_TZ(DATE_FORMAT(v_local, '%Y-%m-%d 00:00:00'), v_zone, '+00:00'),
      v_month = CONVERT_TZ(DATE_FORMAT(v_local, '%Y-%m-01 00:00:00'), v_zone, '+00:00');
  IF p_delta > 0 THEN
    INSERT INTO target_usage_counts
      VALUES (p_target, 'd', v_day, p_delta), (p_target, 'h', v_hour, p_delta),
             (p_target, 'm', v_month, p_delta)
    ON DUPLICATE KEY UPDATE charges = charges + p_delta;
  ELSE
    -- A release finds its charge's rows (a missing one is of a period
    -- counted before the counters existed, and over).
    UPDATE target_usage_counts SET charges = charges + p_delta
     WHERE target_id = p_target
       AND ((period = 'd' AND starts_at = v_day) OR (period = 'h' AND starts_at = v_hour)
            OR (period = 'm' AND starts_at = v_month));
  END IF;
END //

-- Rewrite a target's counters for its current periods from history, in the
-- caller's transaction and a session at UTC (`rtbctl usage --repair`, and a
-- change of the target's time zone), and drop its rows of periods over for
-- 32 days. The
-- rows are locked before counting: a change in flight either committed
-- before the count, which reads committed rows, or adds itself after.
CREATE OR REPLACE PROCEDURE rtb_usage_recount(IN p_target INT UNSIGNED)
MODIFIES SQL DATA
BEGIN
  DECLARE v_hour, v_day, v_month DATETIME;
  DECLARE v_this_hour, v_today, v_this_month INT;
  SELECT hour_start, day_start, month_start INTO v_hour, v_day, v_month
    FROM target_periods WHERE target_id = p_target;
  INSERT INTO target_usage_counts
    VALUES (p_target, 'd', v_day, 0), (p_target, 'h', v_hour, 0), (p_target, 'm', v_month, 0)
  ON DUPLICATE KEY UPDATE charges = charges;
  SELECT COUNT(*), IFNULL(SUM(confirmed_at >= v_day), 0), IFNULL(SUM(confirmed_at >= v_hour), 0)
    INTO v_this_month, v_today, v_this_hour
    FROM reservations WHERE target_id = p_target AND confirmed_at >= v_month
     AND status IN ('claimed', 'completed');
  UPDATE target_usage_counts
     SET charges = CASE period WHEN 'd' THEN v_today WHEN 'h' THEN v_this_hour
                               ELSE v_this_month END
   WHERE target_id = p_target
     AND ((period = 'd' AND starts_at = v_day) OR (period = 'h' AND starts_at = v_hour)
          OR (period = 'm' AND starts_at = v_month));
  DELETE FROM target_usage_counts
   WHERE target_id = p_target AND starts_at < v_hour - INTERVAL 32 DAY;
END //

-- The counters follow every change to a settled charge (status 'claimed' or
-- 'completed', confirmed_at set), whichever procedure or statement makes it:
-- rtb_confirm's claims, a call that fails and gives its reservation back, a
-- bulk load or deletion of history. Confirming alone settles nothing
-- (target_usage counts live confirmations itself), nor does the expiry
-- sweep, which only takes 'claimed' to 'completed' or unsettled rows to
-- 'expired'.
CREATE OR REPLACE TRIGGER reservations_usage_insert AFTER INSERT ON reservations FOR EACH ROW
  IF NEW.confirmed_at IS NOT NULL AND NEW.status IN ('claimed', 'completed') THEN
    CALL rtb_usage_charge(NEW.target_id, UNIX_TIMESTAMP(NEW.confirmed_at), 1);
  END IF //

CREATE OR REPLACE TRIGGER reservations_usage_update AFTER UPDATE ON reservations FOR EACH ROW
BEGIN
  DECLARE v_was BOOLEAN DEFAULT OLD.confirmed_at IS NOT NULL
                                AND OLD.status IN ('claimed', 'completed');
  DECLARE v_is BOOLEAN DEFAULT NEW.confirmed_at IS NOT NULL
                               AND NEW.status IN ('claimed', 'completed');
  IF NOT (v_was AND v_is AND OLD.target_id = NEW.target_id
          AND OLD.confirmed_at = NEW.confirmed_at) THEN
    IF v_was THEN
      CALL rtb_usage_charge(OLD.target_id, UNIX_TIMESTAMP(OLD.confirmed_at), -1);
    END IF;
    IF v_is THEN
      CALL rtb_usage_charge(NEW.target_id, UNIX_TIMESTAMP(NEW.confirmed_at), 1);
    END IF;
  END IF;
END //

CREATE OR REPLACE TRIGGER reservations_usage_delete AFTER DELETE ON reservations FOR EACH ROW
  IF OLD.confirmed_at IS NOT NULL AND OLD.status IN ('claimed', 'completed') THEN
    CALL rtb_usage_charge(OLD.target_id, UNIX_TIMESTAMP(OLD.confirmed_at), -1);
  END IF //

-- A new time zone moves the target's periods: count them again.
CREATE OR REPLACE TRIGGER targets_usage_zone AFTER UPDATE ON targets FOR EACH ROW
  IF NOT OLD.timezone <=> NEW.timezone THEN
    CALL rtb_usage_recount(NEW.id);
  END IF //

-- A database from before the counters: count what its targets have used.
BEGIN NOT ATOMIC
  SET time_zone = '+00:00';
  FOR t IN (SELECT id FROM targets WHERE id NOT IN (SELECT target_id FROM target_usage_counts))
  DO
    CALL rtb_usage_recount(t.id);
  END FOR;
END //

-- Confirm a reservation, charging a target's caps, and with p_claim also
-- claim it for the call at hand. Targets are tried in the reservation's
-- candidate order (only its own target without p_fallback); each is locked
-- while its usage is counted, so concurrent confirms never overbook.
-- p_result: confirmed, claimed, full, expired, used, foreign, not_found,
-- no_target, call_id_in_use (another open call has p_call_id). A claim returns
-- its call's id and token, which the call's events must name.
-- A failed confirm (not a failed claim) leaves the reservation 'no-target'.
-- p_publisher is required: only the owner confirms or claims.
-- p_uuid is ascii like the column: a utf8mb4 parameter would make MariaDB
-- convert the column instead, and scan every reservation's uuid.
CREATE OR REPLACE PROCEDURE rtb_confirm(
  IN p_uuid CHAR(36) CHARACTER SET ascii, IN p_publisher INT UNSIGNED, IN p_claim BOOLEAN,
  IN p_fallback BOOLEAN, IN p_call_id VARCHAR(255), IN p_from VARCHAR(64), IN p_via VARCHAR(4),
  OUT p_result VARCHAR(16), OUT p_destination VARCHAR(255), OUT p_call BIGINT UNSIGNED,
  OUT p_token CHAR(32) CHARACTER SET ascii)
MODIFIES SQL DATA
BEGIN
  IF p_publisher IS NULL THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'rtb_confirm: no publisher';
  END IF;
  SET @confirm_uuid = p_uuid, @confirm_publisher = p_publisher, @confirm_claim = p_claim,
      @confirm_fallback = p_fallback, @confirm_call_id = p_call_id, @confirm_from = p_from,
      @confirm_via = p_via;
  CALL rtb_retried('CALL rtb_confirm_once(@confirm_uuid, @confirm_publisher, @confirm_claim,
    @confirm_fallback, @confirm_call_id, @confirm_from, @confirm_via,
    @confirm_result, @confirm_destination, @confirm_call, @confirm_token)');
  SET p_result = @confirm_result, p_destination = @confirm_destination, p_call = @confirm_call,
      p_token = @confirm_token;
END //

-- Run p_statement (one transaction, rolled back whole on error); when InnoDB
-- picks it as a deadlock's victim (with another claim, or the expiry sweep),
-- run it again, up to three times, rather than fail back to Kamailio.
-- p_statement is a constant CALL; the caller passes its arguments in session
-- variables, so no value is ever spliced into SQL.
CREATE OR REPLACE PROCEDURE rtb_retried(IN p_statement TEXT)
MODIFIES SQL DATA
BEGIN
  DECLARE v_tries INT DEFAULT 0;
  DECLARE v_deadlock BOOLEAN DEFAULT TRUE;
  WHILE v_deadlock AND v_tries < 3 DO
    SET v_tries = v_tries + 1, v_deadlock = FALSE;
    BEGIN
      DECLARE EXIT HANDLER FOR 1213 BEGIN ROLLBACK; SET v_deadlock = TRUE; END;
      EXECUTE IMMEDIATE p_statement;
    END;
  END WHILE;
  IF v_deadlock THEN
    SIGNAL SQLSTATE '40001' SET MESSAGE_TEXT = 'deadlocked three times';
  END IF;
END //

-- One attempt of rtb_confirm(), in one transaction.
CREATE OR REPLACE PROCEDURE rtb_confirm_once(
  IN p_uuid CHAR(36) CHARACTER SET ascii, IN p_publisher INT UNSIGNED, IN p_claim BOOLEAN,
  IN p_fallback BOOLEAN, IN p_call_id VARCHAR(255), IN p_from VARCHAR(64), IN p_via VARCHAR(4),
  OUT p_result VARCHAR(16), OUT p_destination VARCHAR(255), OUT p_call BIGINT UNSIGNED,
  OUT p_token CHAR(32) CHARACTER SET ascii)
MODIFIES SQL DATA
BEGIN
  DECLARE v_id BIGINT UNSIGNED;
  DECLARE v_status VARCHAR(16);
  DECLARE v_owner INT UNSIGNED;
  DECLARE v_live BOOLEAN;
  DECLARE v_list VARCHAR(255);
  DECLARE v_candidate INT UNSIGNED;
  DECLARE v_room, v_capped BOOLEAN;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  -- calls_open_call_id_uq decides, even between racing INVITEs.
  DECLARE EXIT HANDLER FOR 1062 BEGIN
    ROLLBACK;
    SET p_result = 'call_id_in_use', p_destination = NULL, p_call = NULL, p_token = NULL;
  END;

  SET p_result = NULL, p_destination = NULL, p_call = NULL, p_token = NULL;
  SET time_zone = '+00:00';
  -- Each count must see what the confirm holding the lock before us committed.
  SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
  START TRANSACTION;
  SELECT id, status, publisher_id, expires_at > NOW(), IF(p_fallback, candidates, target_id)
    INTO v_id, v_status, v_owner, v_live, v_list
    FROM reservations WHERE uuid = p_uuid FOR UPDATE;

  SET p_result = CASE
    WHEN v_id IS NULL THEN 'not_found'
    WHEN v_owner <> p_publisher THEN 'foreign'
    WHEN v_status IN ('claimed', 'completed') THEN 'used'
    WHEN v_status = 'no-target' THEN 'no_target'
    WHEN NOT v_live THEN 'expired'
    WHEN v_status = 'confirmed' AND NOT p_claim THEN 'confirmed'
    ELSE NULL END;

  -- Already confirmed: the call takes over the slot the confirmation holds.
  IF p_result IS NULL AND v_status = 'confirmed' THEN
    UPDATE reservations SET status = 'claimed' WHERE id = v_id;
    SET p_result = 'claimed';
  END IF;

  WHILE p_result IS NULL AND v_list <> '' DO
    SET v_candidate = SUBSTRING_INDEX(v_list, ',', 1);
    SET v_list = IF(LOCATE(',', v_list) > 0, SUBSTRING(v_list, LOCATE(',', v_list) + 1), '');
    SET v_room = NULL, v_capped = NULL;
    SELECT enabled, concurrency_cap IS NOT NULL OR hourly_cap IS NOT NULL
                    OR daily_cap IS NOT NULL OR monthly_cap IS NOT NULL
      INTO v_room, v_capped FROM targets WHERE id = v_candidate FOR UPDATE;
    -- target_usage only for a target with a cap (as in rtb_ping_once).
    IF v_room AND v_capped THEN
      SELECT (t.concurrency_cap IS NULL OR u.live < t.concurrency_cap)
         AND (t.hourly_cap IS NULL OR u.this_hour < t.hourly_cap)
         AND (t.daily_cap IS NULL OR u.today < t.daily_cap)
         AND (t.monthly_cap IS NULL OR u.this_month < t.monthly_cap)
        INTO v_room
        FROM targets t JOIN target_usage u ON u.target_id = t.id WHERE t.id = v_candidate;
    END IF;
    IF v_room THEN
      -- A pass-through target takes the call only on its live bid, until that expires.
      SELECT t.bid_url IS NULL OR EXISTS (
               SELECT 1 FROM bids b WHERE b.uuid = p_uuid AND b.target_id = t.id
                  AND b.payout IS NOT NULL AND (b.expires_at IS NULL OR b.expires_at > NOW()))
        INTO v_room FROM targets t WHERE t.id = v_candidate;
    END IF;
    IF v_room THEN
      UPDATE reservations r JOIN targets t ON t.id = v_candidate
        LEFT JOIN bids b ON b.uuid = r.uuid AND b.target_id = t.id AND b.payout IS NOT NULL
         SET r.target_id = t.id, r.payout = IFNULL(b.payout, t.payout),
             r.min_seconds = IFNULL(b.min_seconds, t.min_seconds),
             r.confirmed_at = NOW(), r.status = IF(p_claim, 'claimed', 'confirmed')
       WHERE r.id = v_id;
      SET p_result = IF(p_claim, 'claimed', 'confirmed');
    END IF;
  END WHILE;

  IF p_result IS NULL THEN
    SET p_result = 'full';
    IF NOT p_claim THEN
      UPDATE reservations SET status = 'no-target' WHERE id = v_id;
    END IF;
  END IF;
  IF p_result = 'claimed' THEN
    SET p_token = LOWER(HEX(RANDOM_BYTES(16)));
    INSERT INTO calls (reservation_id, target_id, call_id, via, source, token)
      SELECT id, target_id, p_call_id, p_via, p_from, p_token FROM reservations WHERE id = v_id;
    SET p_call = LAST_INSERT_ID();
    -- A number (the winning bid's, else the target's) through the target's
    -- gateway; else the bid's SIP URI, else the target's.
    SELECT IFNULL(rtb_gateway_uri(t.gateway_id, rtb_gateway_number(r.uuid, t.id)),
                  IFNULL(b.destination, t.sip_uri))
      INTO p_destination
      FROM reservations r JOIN targets t ON t.id = r.target_id
      LEFT JOIN bids b ON b.uuid = r.uuid AND b.target_id = t.id AND b.payout IS NOT NULL
     WHERE r.id = v_id;
  END IF;
  COMMIT;
END //

-- The phone number (E.164) a call for reservation p_uuid on target p_target
-- is sent to through the target's gateway: the winning bid's, when it
-- named a number, else the target's own; NULL when the call goes to a SIP
-- URI (a bid's or the target's), which never gets the gateway's credentials.
CREATE OR REPLACE FUNCTION rtb_gateway_number(
  p_uuid CHAR(36) CHARACTER SET ascii, p_target INT UNSIGNED) RETURNS VARCHAR(16)
READS SQL DATA
RETURN (SELECT IF(b.destination IS NULL, t.number, IF(b.destination LIKE '+%', b.destination, NULL))
          FROM targets t
          LEFT JOIN bids b ON b.uuid = p_uuid AND b.target_id = t.id AND b.payout IS NOT NULL
         WHERE t.id = p_target) //

-- Where a call for phone number p_number (E.164) goes through gateway
-- p_gateway: sip:<prefix><the number's digits>@host:port, with
-- ;transport=tcp over TCP; NULL without either. A target's number goes this
-- way, and so may a number a buyer answers with.
CREATE OR REPLACE FUNCTION rtb_gateway_uri(p_gateway INT UNSIGNED, p_number VARCHAR(16))
RETURNS VARCHAR(255)
READS SQL DATA
RETURN (SELECT CONCAT('sip:', prefix, TRIM(LEADING '+' FROM p_number), '@', host, ':', port,
                      IF(transport = 'tcp', ';transport=tcp', ''))
          FROM gateways WHERE id = p_gateway AND p_number IS NOT NULL) //

-- The username and password of the gateway call p_call (its id and token,
-- as its claim returned them) went to, for the edge to answer the
-- gateway's challenge; NULL when it has none, or when the call went to a
-- SIP URI (a bid's, a target's), whose challenge is not the gateway's. The
-- edge reads no gateway otherwise.
CREATE OR REPLACE PROCEDURE rtb_gateway_auth(
  IN p_call BIGINT UNSIGNED, IN p_token CHAR(32) CHARACTER SET ascii,
  OUT p_username VARCHAR(64), OUT p_password VARCHAR(128))
READS SQL DATA
BEGIN
  SET p_username = NULL, p_password = NULL;
  SELECT g.username, g.password INTO p_username, p_password
    FROM calls c JOIN reservations r ON r.id = c.reservation_id
    JOIN targets t ON t.id = c.target_id JOIN gateways g ON g.id = t.gateway_id
   WHERE c.id = p_call AND c.token = p_token AND c.token <> '' AND c.ended_at IS NULL
     AND rtb_gateway_number(r.uuid, t.id) IS NOT NULL;
END //

-- The SIP headers for call p_call's buyer (its id and token, as its claim
-- returned them): its reservation's rendering for the target it was
-- claimed on, "Name: value\r\n" each, or NULL. The edge appends them.
CREATE OR REPLACE FUNCTION rtb_call_headers(
  p_call BIGINT UNSIGNED, p_token CHAR(32) CHARACTER SET ascii)
RETURNS TEXT
READS SQL DATA
RETURN (SELECT JSON_VALUE(r.sip_headers, CONCAT('$."', c.target_id, '"'))
          FROM calls c JOIN reservations r ON r.id = c.reservation_id
         WHERE c.id = p_call AND c.token = p_token AND c.token <> '') //

-- The live reservation a carrier's call is for: the number dialled and the
-- caller ID (any common form of a NANP or E.164 number), or the number
-- alone when it is held for one reservation, and its publisher. When none,
-- p_uuid is NULL and p_fallback the number's campaign's fallback URI, if any.
CREATE OR REPLACE PROCEDURE rtb_pstn_match(
  IN p_dialled VARCHAR(64), IN p_caller VARCHAR(64), OUT p_uuid CHAR(36),
  OUT p_publisher INT UNSIGNED, OUT p_fallback VARCHAR(255))
READS SQL DATA
BEGIN
  DECLARE v_dialled VARCHAR(16) DEFAULT rtb_e164(p_dialled);
  DECLARE v_caller VARCHAR(16) DEFAULT rtb_e164(p_caller);
  SET p_uuid = NULL, p_publisher = NULL, p_fallback = NULL;
  SELECT r.uuid, r.publisher_id INTO p_uuid, p_publisher
    FROM numbers n JOIN reservations r ON r.id = n.held_by
   WHERE n.number = v_dialled AND n.held_until > NOW() AND r.status IN ('reserved', 'confirmed');
  IF p_uuid IS NULL THEN
    SELECT uuid, publisher_id INTO p_uuid, p_publisher FROM reservations
     WHERE inbound_number = v_dialled AND caller_number = v_caller
       AND status IN ('reserved', 'confirmed') AND expires_at > NOW()
     ORDER BY id DESC LIMIT 1;
  END IF;
  IF p_uuid IS NULL THEN
    SELECT c.fallback_sip_uri INTO p_fallback
      FROM numbers n JOIN campaigns c ON c.id = n.campaign_id WHERE n.number = v_dialled;
  END IF;
END //

-- Reservations past expires_at without a call become 'expired' (Kamailio
-- runs this every few seconds). Their confirmations stop holding buyers'
-- slots the moment they expire; this makes it plain in the table.
-- Calls Kamailio lost track of (it restarted while they rang or talked) are
-- ended too, so they stop holding their buyer's slot: one with no answer
-- recorded after 2 minutes ends as a 408 (tm gives up ringing at 30 s), and
-- its reservation stays used: its answer may only have been lost, and a
-- reservation given back could connect twice; one answered and never hung
-- up ends after p_call_max_seconds of talk, as its dialog's timeout would have.
-- The sweeps read committed rows: at the default REPEATABLE READ their range
-- scans lock the gaps between rows too, and deadlocked now and then with
-- claims (seen in `make soak`). A limit under a minute is taken as a minute:
-- rtb_expire(0) would end every answered call at once.
-- A statement picked as a deadlock's victim is left to the next sweep (each
-- is idempotent): an error reaching Kamailio would make db_cluster leave the
-- writer for DB_RETRY_SECONDS, and the edge write through another node.
CREATE OR REPLACE PROCEDURE rtb_expire(IN p_call_max_seconds INT UNSIGNED)
MODIFIES SQL DATA
BEGIN
  DECLARE CONTINUE HANDLER FOR 1213 BEGIN END;
  SET p_call_max_seconds = GREATEST(IFNULL(p_call_max_seconds, 0), 60);
  SET time_zone = '+00:00';
  SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
  UPDATE calls SET ended_at = NOW(3), final_status = 408
   WHERE ended_at IS NULL AND answered_at IS NULL AND claimed_at < NOW(3) - INTERVAL 2 MINUTE;
  UPDATE calls c JOIN reservations r ON r.id = c.reservation_id
     SET c.ended_at = c.answered_at + INTERVAL p_call_max_seconds SECOND,
         c.talk_seconds = p_call_max_seconds,
         c.converted = p_call_max_seconds >= r.min_seconds, r.status = 'completed'
   WHERE c.ended_at IS NULL AND c.answered_at < NOW(3) - INTERVAL p_call_max_seconds SECOND;
  UPDATE reservations SET status = 'expired'
   WHERE status IN ('reserved', 'confirmed') AND expires_at <= NOW();
END //

-- Roll history older than p_days (UTC days; at least 33, so that no charge
-- of a month the counters still count is deleted) up into ping_days and
-- reservation_days, and delete it: pings first (each counted under its
-- reservation's target), then reservations with their calls, except one
-- whose call is still up, then the usage counters of periods long over.
-- Kamailio runs it every minute. Each batch is at
-- most p_batch rows of one key, found through the key's index, in one short
-- READ COMMITTED transaction that locks only old rows, which no ping or claim
-- touches (deleting a reservation this old touches no counter: see
-- rtb_usage_charge). A row is either rolled up or kept, never both, so what
-- a report adds up from the two never changes. One run at a time per
-- database (another returns at once): two would count rows twice. A batch
-- picked as a deadlock's victim is rolled back whole and the run ends: the
-- next minute's run takes it again (see rtb_expire for why not an error).
CREATE OR REPLACE PROCEDURE rtb_retain(IN p_days INT UNSIGNED, IN p_batch INT UNSIGNED)
MODIFIES SQL DATA
BEGIN
  DECLARE v_lock VARCHAR(80) DEFAULT CONCAT(DATABASE(), '.rtb_retain');
  DECLARE v_cutoff DATETIME;
  DECLARE v_rows INT;
  DECLARE EXIT HANDLER FOR 1213 BEGIN ROLLBACK; DO RELEASE_LOCK(v_lock); END;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; DO RELEASE_LOCK(v_lock); RESIGNAL; END;
  IF GET_LOCK(v_lock, 0) THEN
    SET time_zone = '+00:00';
    SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
    SET v_cutoff = UTC_DATE() - INTERVAL GREATEST(IFNULL(p_days, 0), 33) DAY;
    SET p_batch = LEAST(GREATEST(IFNULL(p_batch, 0), 1), 10000);
    CREATE TEMPORARY TABLE IF NOT EXISTS retain_batch (id BIGINT UNSIGNED PRIMARY KEY) ENGINE=MEMORY;
    FOR k IN (SELECT id FROM postback_keys) DO
      REPEAT
        START TRANSACTION;
        DELETE FROM retain_batch;
        INSERT INTO retain_batch
          SELECT id FROM pings WHERE key_id = k.id AND created_at < v_cutoff LIMIT p_batch;
        SET v_rows = ROW_COUNT();
        INSERT INTO ping_days
          SELECT DATE(p.created_at), p.key_id, IFNULL(r.target_id, 0), p.outcome,
                 IFNULL(p.reason, ''), COUNT(*), SUM(p.duration_ms), MAX(p.duration_ms)
            FROM retain_batch b STRAIGHT_JOIN pings p ON p.id = b.id
            LEFT JOIN reservations r ON r.id = p.reservation_id
           GROUP BY 1, 2, 3, 4, 5
        ON DUPLICATE KEY UPDATE pings = pings + VALUES(pings),
          duration_ms = duration_ms + VALUES(duration_ms),
          max_duration_ms = GREATEST(max_duration_ms, VALUES(max_duration_ms));
        DELETE p FROM retain_batch b STRAIGHT_JOIN pings p ON p.id = b.id;
        COMMIT;
      UNTIL v_rows < p_batch END REPEAT;
    END FOR;
    FOR k IN (SELECT id FROM postback_keys) DO
      REPEAT
        CALL rtb_retain_reservations(k.id, v_cutoff, p_batch, v_rows);
      UNTIL v_rows < p_batch END REPEAT;
    END FOR;
    FOR k IN (SELECT id FROM postback_keys) DO
      REPEAT
        DELETE FROM bids WHERE key_id = k.id AND created_at < v_cutoff LIMIT p_batch;
        SET v_rows = ROW_COUNT();
      UNTIL v_rows < p_batch END REPEAT;
    END FOR;
    -- The counters' rows of periods long over: no cap reads them again.
    REPEAT
      DELETE FROM target_usage_counts WHERE starts_at < v_cutoff LIMIT p_batch;
      SET v_rows = ROW_COUNT();
    UNTIL v_rows < p_batch END REPEAT;
    -- Postbacks as old: delivered or given up long since (retries stop after a day).
    REPEAT
      DELETE FROM postbacks WHERE created_at < v_cutoff LIMIT p_batch;
      SET v_rows = ROW_COUNT();
    UNTIL v_rows < p_batch END REPEAT;
    DROP TEMPORARY TABLE retain_batch;
    DO RELEASE_LOCK(v_lock);
  END IF;
END //

-- One batch of rtb_retain(): up to p_batch of a key's reservations that
-- expired before p_cutoff, with their calls, in one transaction. A ping
-- answered with a reservation comes before its expiry (a duplicate may come
-- well after it was made): the hour's margin leaves every such ping rolled
-- up, with its target, before the reservation goes. The statuses are all
-- that reservations_status_ck allows: the index is read by each of them.
-- Every join starts from the batch's ids (STRAIGHT_JOIN): left to choose,
-- MariaDB walked the whole calls table, locking each row it read.
CREATE OR REPLACE PROCEDURE rtb_retain_reservations(
  IN p_key INT UNSIGNED, IN p_cutoff DATETIME, IN p_batch INT UNSIGNED, OUT p_found INT)
MODIFIES SQL DATA
BEGIN
  DECLARE v_locked INT;
  START TRANSACTION;
  DELETE FROM retain_batch;
  INSERT INTO retain_batch
    SELECT id FROM reservations r
     WHERE key_id = p_key
       AND status IN ('reserved', 'confirmed', 'claimed', 'completed', 'no-target', 'expired')
       AND expires_at < p_cutoff - INTERVAL 1 HOUR
       AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.reservation_id = r.id AND c.ended_at IS NULL)
     LIMIT p_batch;
  SET p_found = ROW_COUNT();
  -- Locked with their calls, and looked at again: a call that came up in
  -- between keeps its reservation, and none ends between counting and deleting.
  SELECT COUNT(*) INTO v_locked FROM retain_batch b STRAIGHT_JOIN reservations r ON r.id = b.id
    LEFT JOIN calls c ON c.reservation_id = r.id FOR UPDATE;
  DELETE b FROM retain_batch b STRAIGHT_JOIN calls c ON c.reservation_id = b.id WHERE c.ended_at IS NULL;
  INSERT INTO reservation_days (day, key_id, publisher_id, campaign_id, target_id, reservations)
    SELECT DATE(r.created_at), r.key_id, r.publisher_id, r.campaign_id, r.target_id, COUNT(*)
      FROM retain_batch b STRAIGHT_JOIN reservations r ON r.id = b.id
     GROUP BY 1, 2, 3, 4, 5
  ON DUPLICATE KEY UPDATE reservations = reservations + VALUES(reservations);
  INSERT INTO reservation_days (day, key_id, publisher_id, campaign_id, target_id, calls,
                                answered, converted, talk_seconds, payout)
    SELECT DATE(c.claimed_at), r.key_id, r.publisher_id, r.campaign_id, c.target_id, COUNT(*),
           COUNT(c.answered_at), SUM(c.converted), IFNULL(SUM(c.talk_seconds), 0),
           SUM(IF(c.converted, r.payout, 0))
      FROM retain_batch b STRAIGHT_JOIN reservations r ON r.id = b.id
      STRAIGHT_JOIN calls c ON c.reservation_id = r.id
     GROUP BY 1, 2, 3, 4, 5
  ON DUPLICATE KEY UPDATE calls = calls + VALUES(calls), answered = answered + VALUES(answered),
    converted = converted + VALUES(converted),
    talk_seconds = talk_seconds + VALUES(talk_seconds), payout = payout + VALUES(payout);
  DELETE c FROM retain_batch b STRAIGHT_JOIN calls c ON c.reservation_id = b.id;
  DELETE r FROM retain_batch b STRAIGHT_JOIN reservations r ON r.id = b.id;
  COMMIT;
END //

-- What happened to call p_call (its id and token, as its claim returned
-- them; any other pair is refused with an error): p_event 'answered' (200 OK),
-- 'ended' (BYE or dialog timeout) or 'failed' (a final reply >= 300, with
-- p_code), at p_at (Unix time with microseconds, as Kamailio saw it; NULL:
-- now). An answered call that ends uses the reservation up; one that fails
-- before answer gives it back to the publisher, still confirmed, until it
-- expires. Idempotent: Kamailio may report an event twice (the dialog's end
-- and the BYE itself, or a retry after the database was away), and only the
-- first of each counts. Events may also come out of order: an answer that
-- failed (a deadlock, the database away) is retried after the call's end.
-- Only an answered call ends, so an end never gives the reservation back;
-- the late answer then fills in the talk time.
CREATE OR REPLACE PROCEDURE rtb_call_event(
  IN p_call BIGINT UNSIGNED, IN p_token CHAR(32) CHARACTER SET ascii, IN p_event VARCHAR(8),
  IN p_code SMALLINT UNSIGNED, IN p_at DECIMAL(16, 6))
MODIFIES SQL DATA
BEGIN
  SET @event_call = p_call, @event_token = p_token, @event_name = p_event, @event_code = p_code,
      @event_at = p_at;
  CALL rtb_retried('CALL rtb_call_event_once(@event_call, @event_token, @event_name, @event_code,
    @event_at)');
END //

-- One attempt of rtb_call_event(), in one transaction.
CREATE OR REPLACE PROCEDURE rtb_call_event_once(
  IN p_call BIGINT UNSIGNED, IN p_token CHAR(32) CHARACTER SET ascii, IN p_event VARCHAR(8),
  IN p_code SMALLINT UNSIGNED, IN p_at DECIMAL(16, 6))
MODIFIES SQL DATA
BEGIN
  DECLARE v_at TIMESTAMP(3);
  DECLARE v_call BIGINT UNSIGNED;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  SET time_zone = '+00:00';
  SET v_at = IFNULL(FROM_UNIXTIME(p_at), NOW(3));
  START TRANSACTION;
  SELECT id INTO v_call FROM calls WHERE id = p_call AND token = p_token AND token <> '';
  IF v_call IS NULL THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'rtb_call_event: no such call';
  END IF;
  IF p_event = 'answered' THEN
    CALL rtb_call_answered(v_call, v_at);
  ELSE
    CALL rtb_call_over(v_call, p_event, p_code, v_at);
  END IF;
  COMMIT;
END //

-- Whether an in-dialog request names, by its Record-Route's id and token, an
-- open call with this Call-ID claimed before p_since (when the Kamailio now
-- running started): a call up across a restart, whose dialog Kamailio lost.
CREATE OR REPLACE PROCEDURE rtb_call_untracked(
  IN p_call BIGINT UNSIGNED, IN p_token CHAR(32) CHARACTER SET ascii, IN p_call_id VARCHAR(255),
  IN p_since DECIMAL(16, 6), OUT p_open BOOLEAN)
READS SQL DATA
BEGIN
  SET time_zone = '+00:00';
  SET p_open = EXISTS (SELECT 1 FROM calls WHERE id = p_call AND token = p_token AND token <> ''
                         AND call_id = p_call_id AND ended_at IS NULL
                         AND claimed_at < FROM_UNIXTIME(p_since));
END //

-- rtb_call_event()'s answer, inside its transaction: the call, when it has
-- no answer yet and is still up or ended before its answer came.
CREATE OR REPLACE PROCEDURE rtb_call_answered(IN p_call BIGINT UNSIGNED, IN p_at TIMESTAMP(3))
MODIFIES SQL DATA
BEGIN
  DECLARE v_call BIGINT UNSIGNED;
  SELECT id INTO v_call FROM calls
   WHERE id = p_call AND answered_at IS NULL AND (ended_at IS NULL OR final_status = 200)
   FOR UPDATE;
  UPDATE calls c JOIN reservations r ON r.id = c.reservation_id
     SET c.answered_at = LEAST(p_at, IFNULL(c.ended_at, p_at)), c.final_status = 200,
         c.talk_seconds = IF(c.ended_at IS NULL, NULL,
                             GREATEST(TIMESTAMPDIFF(MICROSECOND, p_at, c.ended_at), 0) / 1000000),
         c.converted = c.ended_at IS NOT NULL
                       AND TIMESTAMPDIFF(MICROSECOND, p_at, c.ended_at) >= r.min_seconds * 1000000
   WHERE c.id = v_call;
END //

-- rtb_call_event()'s end or failure, inside its transaction.
CREATE OR REPLACE PROCEDURE rtb_call_over(
  IN p_call BIGINT UNSIGNED, IN p_event VARCHAR(8), IN p_code SMALLINT UNSIGNED, IN p_at TIMESTAMP(3))
MODIFIES SQL DATA
BEGIN
  DECLARE v_call BIGINT UNSIGNED;
  DECLARE v_answered BOOLEAN;
  SELECT id, answered_at IS NOT NULL INTO v_call, v_answered
    FROM calls WHERE id = p_call AND ended_at IS NULL FOR UPDATE;
  IF v_call IS NOT NULL AND (v_answered OR p_event = 'ended') THEN
    -- Ended before its answer was recorded: the talk time waits for it.
    UPDATE calls c JOIN reservations r ON r.id = c.reservation_id
       SET c.talk_seconds = IF(v_answered,
                               GREATEST(TIMESTAMPDIFF(MICROSECOND, c.answered_at, p_at), 0) / 1000000,
                               NULL),
           c.converted = v_answered
                         AND TIMESTAMPDIFF(MICROSECOND, c.answered_at, p_at) >= r.min_seconds * 1000000,
           c.final_status = 200, c.ended_at = p_at, r.status = 'completed'
     WHERE c.id = v_call;
    -- A number held for this reservation alone is free for the next one.
    UPDATE numbers n JOIN calls c ON c.reservation_id = n.held_by
       SET n.held_until = NOW() WHERE c.id = v_call;
  ELSEIF v_call IS NOT NULL THEN
    UPDATE calls c JOIN reservations r ON r.id = c.reservation_id
       SET c.ended_at = p_at, c.final_status = p_code, r.status = 'confirmed'
     WHERE c.id = v_call;
  END IF;
END //

-- A call's end queues one postback when its reservation's key has a
-- postback URL, in the transaction that records the end, whichever
-- statement ends it (rtb_call_over, rtb_expire's sweep): once the end is
-- committed, so is its postback, and only the first end of a call is one.
-- The key's row is share-locked, as pings' foreign keys already lock it:
-- only a key edit in flight can hold a call's end up, never a ping.
CREATE OR REPLACE TRIGGER calls_postback AFTER UPDATE ON calls FOR EACH ROW
BEGIN
  DECLARE v_key INT UNSIGNED;
  IF OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL THEN
    SELECT k.id INTO v_key FROM reservations r JOIN postback_keys k ON k.id = r.key_id
     WHERE r.id = NEW.reservation_id AND k.postback_url IS NOT NULL;
    IF v_key IS NOT NULL THEN
      INSERT INTO postbacks (call_row_id, key_id) VALUES (NEW.id, v_key);
    END IF;
  END IF;
END //

-- A change to a target, a key or a campaign's margin moves ping_cache_version (see the table).
CREATE OR REPLACE TRIGGER targets_cache_insert AFTER INSERT ON targets FOR EACH ROW
  UPDATE ping_cache_version SET version = version + 1 WHERE id = 1 //
CREATE OR REPLACE TRIGGER targets_cache_update AFTER UPDATE ON targets FOR EACH ROW
  UPDATE ping_cache_version SET version = version + 1 WHERE id = 1 //
CREATE OR REPLACE TRIGGER targets_cache_delete AFTER DELETE ON targets FOR EACH ROW
  UPDATE ping_cache_version SET version = version + 1 WHERE id = 1 //
CREATE OR REPLACE TRIGGER campaigns_cache_update AFTER UPDATE ON campaigns FOR EACH ROW
  UPDATE ping_cache_version SET version = version + 1 WHERE id = 1 //
CREATE OR REPLACE TRIGGER postback_keys_cache_insert AFTER INSERT ON postback_keys FOR EACH ROW
  UPDATE ping_cache_version SET version = version + 1 WHERE id = 1 //
CREATE OR REPLACE TRIGGER postback_keys_cache_update AFTER UPDATE ON postback_keys FOR EACH ROW
  UPDATE ping_cache_version SET version = version + 1 WHERE id = 1 //
CREATE OR REPLACE TRIGGER postback_keys_cache_delete AFTER DELETE ON postback_keys FOR EACH ROW
  UPDATE ping_cache_version SET version = version + 1 WHERE id = 1 //

-- A ping in one call (app/pings.py). The web worker sends what it worked
-- out from its cache of keys and targets (made at p_version): the caller's
-- E.164 number, the tags as JSON, the ids of the targets open to this
-- caller (hours, geo, tags) best first, or p_reason when its rules left
-- none, or p_error when the ping broke a rule (a tag, the caller number),
-- and p_bids, what the pass-through targets it asked answered (a JSON
-- array; see rtb_ping_bids).
-- Here the rest is decided and written: the key's rate window, the
-- caller's Ping Shield row, the caps, the reservation, its pool number,
-- auto-confirmation and the ping-log row. One result set answers: outcome
-- 'stale' (the cache is older than p_version says: nothing was done),
-- 'error' (reason: invalid_key, rate_limited or p_error), 'rejected'
-- (reason), 'duplicate' (the caller's live reservation), 'reserved' or
-- 'confirmed', with the reservation and its latest call. The caller commits:
-- a worker that dies before it has the answer leaves nothing behind, as
-- MariaDB rolls back the transaction of a connection that is gone.
CREATE OR REPLACE PROCEDURE rtb_ping(
  IN p_key INT UNSIGNED, IN p_version BIGINT UNSIGNED, IN p_uuid CHAR(36) CHARACTER SET ascii,
  IN p_caller VARCHAR(16), IN p_tags LONGTEXT, IN p_candidates TEXT, IN p_reason VARCHAR(32),
  IN p_error VARCHAR(32), IN p_default_rate INT UNSIGNED, IN p_most_numbers INT UNSIGNED,
  IN p_elapsed_ms DECIMAL(10, 3), IN p_bids LONGTEXT)
MODIFIES SQL DATA
BEGIN
  SET @ping_key = p_key, @ping_version = p_version, @ping_uuid = p_uuid, @ping_caller = p_caller,
      @ping_tags = p_tags, @ping_candidates = p_candidates, @ping_reason = p_reason,
      @ping_error = p_error, @ping_default_rate = p_default_rate, @ping_bids = p_bids,
      @ping_most_numbers = p_most_numbers, @ping_started = SYSDATE(6) - INTERVAL
        ROUND(IFNULL(p_elapsed_ms, 0) * 1000) MICROSECOND;
  CALL rtb_retried('CALL rtb_ping_once(@ping_key, @ping_version, @ping_uuid, @ping_caller,
    @ping_tags, @ping_candidates, @ping_reason, @ping_error, @ping_default_rate,
    @ping_most_numbers, @ping_started, @ping_bids, @ping_outcome, @ping_why, @ping_id,
    @ping_publisher)');
  -- An auto-confirm key's reservation is committed, then confirmed like any
  -- other (rtb_confirm locks each candidate target), then logged.
  IF @ping_outcome = 'reserved' AND @ping_publisher IS NOT NULL THEN
    COMMIT;
    CALL rtb_confirm(p_uuid, @ping_publisher, FALSE, TRUE, NULL, NULL, NULL,
                     @ping_confirmed, @ping_destination, @ping_call, @ping_token);
    IF @ping_confirmed = 'confirmed' THEN
      SET @ping_outcome = 'confirmed';
    ELSE
      SET @ping_outcome = 'rejected', @ping_why = 'capped';
    END IF;
    START TRANSACTION;
    CALL rtb_ping_log(p_key, @ping_outcome, @ping_why,
                      IF(@ping_outcome = 'confirmed', @ping_id, NULL), @ping_started);
  END IF;
  -- Three columns: the reservation and its latest call come as one JSON
  -- object (its fields null when there is none). The worker's driver parses
  -- every column's description on every call, and 19 of them cost it more
  -- than the rest of the answer (docs/performance.md).
  SELECT @ping_outcome AS outcome, @ping_why AS reason, JSON_OBJECT(
           'id', r.id, 'uuid', r.uuid, 'status', r.status, 'payout', r.payout,
           'min_seconds', r.min_seconds, 'inbound_number', r.inbound_number,
           'expires_at', r.expires_at, 'caller_number', r.caller_number,
           'publisher_id', r.publisher_id,
           'call', JSON_OBJECT('via', c.via, 'claimed_at', c.claimed_at,
                               'answered_at', c.answered_at, 'ended_at', c.ended_at,
                               'talk_seconds', c.talk_seconds, 'final_status', c.final_status,
                               'converted', c.converted)) AS reservation
    FROM ping_cache_version v
    LEFT JOIN reservations r ON r.id = @ping_id
    LEFT JOIN calls c ON c.id = (SELECT MAX(id) FROM calls WHERE reservation_id = @ping_id)
   WHERE v.id = 1;
END //

-- The ping-log row of a ping that started at p_started.
CREATE OR REPLACE PROCEDURE rtb_ping_log(
  IN p_key INT UNSIGNED, IN p_outcome VARCHAR(16), IN p_reason VARCHAR(32),
  IN p_reservation BIGINT UNSIGNED, IN p_started DATETIME(6))
MODIFIES SQL DATA
INSERT INTO pings (key_id, outcome, reason, reservation_id, duration_ms)
  VALUES (p_key, p_outcome, p_reason, p_reservation,
          TIMESTAMPDIFF(MICROSECOND, p_started, SYSDATE(6)) / 1000) //

-- One attempt of rtb_ping(), in one transaction, left open for rtb_ping's
-- caller to commit. p_publisher is set when the new reservation's key
-- confirms automatically: rtb_ping then confirms and logs it.
CREATE OR REPLACE PROCEDURE rtb_ping_once(
  IN p_key INT UNSIGNED, IN p_version BIGINT UNSIGNED, IN p_uuid CHAR(36) CHARACTER SET ascii,
  IN p_caller VARCHAR(16), IN p_tags LONGTEXT, IN p_candidates TEXT, IN p_reason VARCHAR(32),
  IN p_error VARCHAR(32), IN p_default_rate INT UNSIGNED, IN p_most_numbers INT UNSIGNED,
  IN p_started DATETIME(6), IN p_bids LONGTEXT, OUT p_outcome VARCHAR(16), OUT p_why VARCHAR(32),
  OUT p_id BIGINT UNSIGNED, OUT p_publisher INT UNSIGNED)
MODIFIES SQL DATA
BEGIN
  DECLARE v_version BIGINT UNSIGNED;
  DECLARE v_campaign, v_publisher, v_ttl, v_rate INT UNSIGNED;
  DECLARE v_inbound, v_number VARCHAR(16);
  DECLARE v_auto BOOLEAN;
  DECLARE v_scope VARCHAR(16) CHARACTER SET ascii;
  DECLARE v_earlier BIGINT UNSIGNED;
  DECLARE v_status VARCHAR(16);
  DECLARE v_live BOOLEAN;
  DECLARE v_owner INT UNSIGNED;
  DECLARE v_list TEXT DEFAULT IFNULL(p_candidates, '');
  DECLARE v_candidate, v_best INT UNSIGNED;
  DECLARE v_room, v_capped BOOLEAN;
  DECLARE v_enabled BOOLEAN DEFAULT FALSE;
  DECLARE v_ranked VARCHAR(255) CHARACTER SET ascii DEFAULT '';
  DECLARE v_open TEXT;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;

  SET p_outcome = NULL, p_why = NULL, p_id = NULL, p_publisher = NULL;
  SET time_zone = '+00:00';
  -- Each count must see what the ping holding the lock before us committed.
  -- (SESSION: the worker's cache reads may have a transaction open, which
  -- START TRANSACTION commits.)
  SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
  START TRANSACTION;
  ping: BEGIN
    SELECT version INTO v_version FROM ping_cache_version WHERE id = 1;
    IF NOT v_version <=> p_version THEN
      SET p_outcome = 'stale';
      LEAVE ping;
    END IF;
    SELECT campaign_id, publisher_id, ttl_seconds, inbound_number, auto_confirm,
           IF(duplicate_scope = 'key', CONCAT('k', id), CONCAT('c', campaign_id)),
           IF(rate_limit > 0, rate_limit, p_default_rate)
      INTO v_campaign, v_publisher, v_ttl, v_inbound, v_auto, v_scope, v_rate
      FROM postback_keys WHERE id = p_key;
    IF v_campaign IS NULL THEN
      SET p_outcome = 'error', p_why = 'invalid_key';
      LEAVE ping;
    END IF;
    IF p_error IS NOT NULL THEN
      SET p_outcome = 'error', p_why = p_error;
      LEAVE ping;
    END IF;

    -- This ping in the key's current second; the row lock keeps the count exact.
    INSERT INTO key_rate_windows (key_id, window_start, pings)
      VALUES (p_key, UNIX_TIMESTAMP(), 1)
      ON DUPLICATE KEY UPDATE pings = IF(window_start = VALUES(window_start), pings + 1, 1),
                              window_start = VALUES(window_start);
    IF (SELECT pings FROM key_rate_windows WHERE key_id = p_key) > v_rate THEN
      ROLLBACK;
      SET p_outcome = 'error', p_why = 'rate_limited';
      LEAVE ping;
    END IF;
    CALL rtb_ping_bids(p_uuid, p_key, p_bids);

    -- Ping Shield: the caller's row in the key's (or campaign's) scope, locked
    -- until commit. A live reservation is given back to its own publisher only.
    IF p_caller IS NOT NULL THEN
      INSERT INTO caller_reservations (scope, caller_number) VALUES (v_scope, p_caller)
        ON DUPLICATE KEY UPDATE scope = scope;
      SELECT reservation_id INTO v_earlier FROM caller_reservations
       WHERE scope = v_scope AND caller_number = p_caller FOR UPDATE;
      IF v_earlier IS NOT NULL THEN
        SELECT status, status IN ('reserved', 'confirmed') AND expires_at > NOW(), publisher_id
          INTO v_status, v_live, v_owner FROM reservations WHERE id = v_earlier;
        IF v_live AND v_owner = v_publisher THEN
          SET p_outcome = 'duplicate', p_id = v_earlier;
          LEAVE ping;
        END IF;
        IF v_live OR v_status = 'claimed' THEN
          SET p_outcome = 'rejected', p_why = 'duplicate';
          LEAVE ping;
        END IF;
      END IF;
    END IF;

    IF p_reason IS NOT NULL THEN
      SET p_outcome = 'rejected', p_why = p_reason;
      LEAVE ping;
    END IF;
    -- The candidates with room, in the worker's order; they become the
    -- reservation's candidates as far as 255 characters hold them. When
    -- none has a cap (and they fit), one read finds them all; else each is
    -- read in turn, a capped one's usage with it.
    SELECT GROUP_CONCAT(t.id ORDER BY c.position),
           MAX(concurrency_cap IS NOT NULL OR hourly_cap IS NOT NULL OR daily_cap IS NOT NULL
               OR monthly_cap IS NOT NULL)
      INTO v_open, v_capped
      FROM JSON_TABLE(CONCAT('[', v_list, ']'), '$[*]'
             COLUMNS (position FOR ORDINALITY, id INT UNSIGNED PATH '$')) c
      JOIN targets t ON t.id = c.id AND t.campaign_id = v_campaign AND t.enabled;
    IF NOT v_capped AND LENGTH(v_open) <= 255 THEN
      SET v_ranked = v_open, v_best = SUBSTRING_INDEX(v_open, ',', 1), v_enabled = TRUE,
          v_list = '';
    END IF;
    WHILE v_list <> '' DO
      SET v_candidate = SUBSTRING_INDEX(v_list, ',', 1);
      SET v_list = IF(LOCATE(',', v_list) > 0, SUBSTRING(v_list, LOCATE(',', v_list) + 1), '');
      SET v_room = NULL, v_capped = NULL;
      SELECT concurrency_cap IS NOT NULL OR hourly_cap IS NOT NULL OR daily_cap IS NOT NULL
             OR monthly_cap IS NOT NULL
        INTO v_capped
        FROM targets WHERE id = v_candidate AND campaign_id = v_campaign AND enabled;
      -- Reading target_usage is most of a ping's work in the database (about
      -- 0.6 ms a candidate): a target without caps has room without it.
      IF v_capped THEN
        SELECT (t.concurrency_cap IS NULL OR u.live < t.concurrency_cap)
           AND (t.hourly_cap IS NULL OR u.this_hour < t.hourly_cap)
           AND (t.daily_cap IS NULL OR u.today < t.daily_cap)
           AND (t.monthly_cap IS NULL OR u.this_month < t.monthly_cap)
          INTO v_room
          FROM targets t JOIN target_usage u ON u.target_id = t.id WHERE t.id = v_candidate;
      ELSEIF v_capped IS NOT NULL THEN
        SET v_room = TRUE;
      END IF;
      SET v_enabled = v_enabled OR v_capped IS NOT NULL;
      IF v_room THEN
        IF LENGTH(v_ranked) + LENGTH(v_candidate) + (v_ranked <> '') > 255 THEN
          SET v_list = '';
        ELSE
          SET v_best = IFNULL(v_best, v_candidate),
              v_ranked = IF(v_ranked = '', v_candidate, CONCAT(v_ranked, ',', v_candidate));
        END IF;
      END IF;
    END WHILE;
    IF v_best IS NULL THEN
      SET p_outcome = 'rejected', p_why = IF(v_enabled, 'capped', 'no_target');
      LEAVE ping;
    END IF;

    -- A live bid lends its payout and seconds, and its expiry when that comes first.
    INSERT INTO reservations (uuid, key_id, publisher_id, campaign_id, target_id, caller_number,
                              inbound_number, payout, min_seconds, tags, status, candidates,
                              created_at, expires_at)
      SELECT p_uuid, p_key, v_publisher, v_campaign, t.id, p_caller, v_inbound,
             IFNULL(b.payout, t.payout), IFNULL(b.min_seconds, t.min_seconds), p_tags,
             'reserved', v_ranked, NOW(),
             LEAST(NOW() + INTERVAL v_ttl SECOND, IFNULL(b.expires_at, NOW() + INTERVAL v_ttl SECOND))
        FROM targets t
        LEFT JOIN bids b ON b.uuid = p_uuid AND b.target_id = t.id AND b.payout IS NOT NULL
       WHERE t.id = v_best;
    SET p_id = LAST_INSERT_ID(), p_outcome = 'reserved';
    IF p_caller IS NOT NULL THEN
      UPDATE caller_reservations SET reservation_id = p_id
       WHERE scope = v_scope AND caller_number = p_caller;
    END IF;
    IF v_inbound IS NULL THEN
      CALL rtb_ping_number(p_id, p_key, v_campaign, p_caller, p_most_numbers, v_number);
      IF v_number IS NOT NULL THEN
        UPDATE reservations SET inbound_number = v_number WHERE id = p_id;
      END IF;
    END IF;
    IF v_auto THEN
      SET p_publisher = v_publisher;
    END IF;
  END ping;
  -- Every ping of a known key is logged, an auto-confirmed one by rtb_ping.
  IF p_outcome <> 'stale' AND NOT p_why <=> 'invalid_key' AND p_publisher IS NULL THEN
    CALL rtb_ping_log(p_key, p_outcome, p_why,
                      IF(p_outcome IN ('reserved', 'duplicate'), p_id, NULL), p_started);
  END IF;
END //

-- What the pass-through targets asked for ping p_uuid answered, from the
-- JSON array app/bidding.py makes: objects of target_id, outcome, reason,
-- ms, amount, payout (set on a bid that may take the call), seconds,
-- bid_id, destination and expires_in (seconds from now).
CREATE OR REPLACE PROCEDURE rtb_ping_bids(
  IN p_uuid CHAR(36) CHARACTER SET ascii, IN p_key INT UNSIGNED, IN p_bids LONGTEXT)
MODIFIES SQL DATA
IF p_bids IS NOT NULL THEN
  INSERT INTO bids (uuid, target_id, key_id, outcome, reason, duration_ms, amount, payout,
                    min_seconds, bid_id, destination, expires_at)
    SELECT p_uuid, j.target_id, p_key, j.outcome, j.reason, j.ms, j.amount, j.payout, j.seconds,
           j.bid_id, j.destination, NOW() + INTERVAL j.expires_in SECOND
      FROM JSON_TABLE(p_bids, '$[*]' COLUMNS (
             target_id INT UNSIGNED PATH '$.target_id',
             outcome VARCHAR(8) PATH '$.outcome',
             reason VARCHAR(32) PATH '$.reason',
             ms DECIMAL(10, 3) PATH '$.ms',
             amount DECIMAL(10, 2) PATH '$.amount',
             payout DECIMAL(10, 2) PATH '$.payout',
             seconds INT UNSIGNED PATH '$.seconds',
             bid_id VARCHAR(255) PATH '$.bid_id',
             destination VARCHAR(255) PATH '$.destination',
             expires_in INT UNSIGNED PATH '$.expires_in')) j;
END IF //

-- A pool number for reservation p_reservation, or NULL when none is free or
-- the key's live reservations hold p_most already. With a caller number: a
-- number not held, that no other live reservation shares with this caller
-- (a call is matched by number plus caller ID); the number's row is read
-- under a shared lock and the (number, caller) row locked, so sharers do not
-- wait for each other. Without: a number no live reservation uses, held for
-- this one alone until the reservation expires, under the number row's
-- exclusive lock.
-- Numbers are taken in a fixed order, so these locks cannot deadlock.
-- Racing pings of one key count their numbers in turn: rtb_ping_once holds
-- the key's rate window row.
CREATE OR REPLACE PROCEDURE rtb_ping_number(
  IN p_reservation BIGINT UNSIGNED, IN p_key INT UNSIGNED, IN p_campaign INT UNSIGNED,
  IN p_caller VARCHAR(16), IN p_most INT UNSIGNED, OUT p_number VARCHAR(16))
MODIFIES SQL DATA
this_proc: BEGIN
  DECLARE v_held, v_expires TIMESTAMP;
  DECLARE v_match BIGINT UNSIGNED;
  SET p_number = NULL;
  IF NOT EXISTS (SELECT 1 FROM numbers WHERE campaign_id = p_campaign OR campaign_id IS NULL)
     OR (SELECT COUNT(*) FROM reservations
          WHERE key_id = p_key AND inbound_number IS NOT NULL
            AND status IN ('reserved', 'confirmed', 'claimed') AND expires_at > NOW()) >= p_most
  THEN
    LEAVE this_proc;
  END IF;
  SELECT expires_at INTO v_expires FROM reservations WHERE id = p_reservation;
  pool: FOR n IN (SELECT number FROM numbers WHERE campaign_id = p_campaign OR campaign_id IS NULL
                  ORDER BY campaign_id IS NULL, number) DO
    IF p_caller IS NOT NULL THEN
      SELECT held_until INTO v_held FROM numbers WHERE number = n.number LOCK IN SHARE MODE;
    ELSE
      SELECT held_until INTO v_held FROM numbers WHERE number = n.number FOR UPDATE;
    END IF;
    IF v_held IS NULL OR v_held <= NOW() THEN
      IF p_caller IS NOT NULL THEN
        INSERT INTO caller_reservations (scope, caller_number)
          VALUES (CONCAT('n', n.number), p_caller) ON DUPLICATE KEY UPDATE scope = scope;
        SELECT reservation_id INTO v_match FROM caller_reservations
         WHERE scope = CONCAT('n', n.number) AND caller_number = p_caller FOR UPDATE;
        IF NOT EXISTS (SELECT 1 FROM reservations WHERE id = v_match
                         AND status IN ('reserved', 'confirmed', 'claimed') AND expires_at > NOW())
        THEN
          UPDATE caller_reservations SET reservation_id = p_reservation
           WHERE scope = CONCAT('n', n.number) AND caller_number = p_caller;
          SET p_number = n.number;
          LEAVE pool;
        END IF;
      ELSEIF NOT EXISTS (SELECT 1 FROM reservations WHERE inbound_number = n.number
                           AND status IN ('reserved', 'confirmed', 'claimed')
                           AND expires_at > NOW()) THEN
        UPDATE numbers SET held_by = p_reservation, held_until = v_expires
         WHERE number = n.number;
        SET p_number = n.number;
        LEAVE pool;
      END IF;
    END IF;
  END FOR pool;
END //

DELIMITER ;
