"""Retention: history older than RTB_RETENTION_DAYS is rolled up into daily
counts and deleted in small batches by rtb_retain(), called here as Kamailio's
timer calls it. Reports read the same before and after; nothing live goes;
pings and claims go on while a big backlog is worked through; the usage
counters do not move."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import create_engine, text

from app import pings, reports, usage
from tests import rtbctl
from tests.polling import eventually
from tests.test_market import ping, target
from tests.test_usage import claim, usage_of

# The tests keep 35 days and make history 45 days old: Kamailio's own runs
# (which keep RTB_RETENTION_DAYS, 90) leave it to them.
DAYS = 35
OLD_DAYS = 45


@pytest.fixture
def engine(database):
    made = create_engine(database.url("rtb"), isolation_level="AUTOCOMMIT")
    yield made
    made.dispose()


def midnight(days_ago: int) -> datetime:
    """The start of a UTC day, as the naive UTC the database reads."""
    return datetime.combine(datetime.now(UTC).date() - timedelta(days=days_ago), time())


def add_history(conn, m, rows: int, spacing_seconds: int = 2220) -> None:
    """rows reservations made from OLD_DAYS ago on, one every spacing_seconds,
    with their pings and calls: expired, no-target (a rejected ping) and
    completed ones, whose calls failed, were answered, or converted; and as
    many pings that got an error. Calls and pings cross midnights too."""
    keys = {"k": m.key_id, "p": m.publisher_id, "c": m.campaign_id, "t": m.target_id,
            "at": midnight(OLD_DAYS) + timedelta(hours=20, minutes=41), "gap": spacing_seconds}
    conn.execute(text(
        "INSERT INTO reservations (uuid, key_id, publisher_id, campaign_id, target_id, payout,"
        " min_seconds, tags, status, created_at, expires_at, confirmed_at)"
        " SELECT UUID(), :k, :p, :c, :t, 12.5, 60, '{}',"
        "  ELT(1 + seq % 3, 'expired', 'completed', 'no-target'), at, at + INTERVAL 60 SECOND,"
        "  IF(seq % 3 = 1, at, NULL)"
        f" FROM (SELECT seq, :at + INTERVAL seq * :gap SECOND AS at FROM seq_1_to_{rows}) s"),
        keys)
    conn.execute(text(
        "INSERT INTO calls (reservation_id, target_id, call_id, source, claimed_at, answered_at,"
        " ended_at, talk_seconds, final_status, converted)"
        " SELECT id, target_id, uuid, '127.0.0.1', created_at + INTERVAL 50 SECOND,"
        "  IF(id % 2, NULL, created_at + INTERVAL 55 SECOND), created_at + INTERVAL 170 SECOND,"
        "  IF(id % 2, NULL, 60 + id % 70 + 0.125), IF(id % 2, 486, 200), id % 2 = 0 AND id % 70 > 0"
        " FROM reservations WHERE key_id = :k AND status = 'completed'"), keys)
    conn.execute(text(
        "INSERT INTO pings (key_id, created_at, outcome, reason, reservation_id, duration_ms)"
        " SELECT key_id, created_at, IF(status = 'no-target', 'rejected', 'reserved'),"
        "  IF(status = 'no-target', 'capped', NULL), IF(status = 'no-target', NULL, id),"
        "  1.5 + id % 11 / 8 FROM reservations WHERE key_id = :k"
        " UNION ALL SELECT :k, at, 'error', 'invalid_tag', NULL, 0.25 + seq % 5"
        f" FROM (SELECT seq, :at + INTERVAL seq * :gap SECOND AS at FROM seq_1_to_{rows}) s"),
        keys)


def retain(conn, batch: int = 1000) -> None:
    conn.execute(text("CALL rtb_retain(:days, :batch)"), {"days": DAYS, "batch": batch})


def old_rows(conn, key_id: int) -> dict[str, int]:
    before = midnight(DAYS)
    return {table: conn.scalar(text(f"SELECT COUNT(*) FROM {table} WHERE key_id = :k"
                                    f" AND created_at < :before"), {"k": key_id, "before": before})
            for table in ("pings", "reservations")}


def everything_read(sessions, key_id: int) -> list:
    """What rtbctl report (by each grouping) and rtbctl pings (a key's, and
    everyone's) answer, from a day boundary before the history and from one
    inside it."""
    with sessions() as db:
        return [(reports.report(db, since, by), pings.summary(db, [key_id], since),
                 pings.summary(db, None, since))
                for since in (midnight(OLD_DAYS + 20), midnight(OLD_DAYS - 2))
                for by in (None, *reports.BY)]


def test_reports_read_the_same_before_and_after_history_is_rolled_up(
        client, market, engine, sessions, env):
    m = market(targets=[target("12"), target("9")])
    with engine.connect() as conn:
        add_history(conn, m, 300)
        ping(client, m.key)
        counters = usage_of(sessions, m.target_id)
        before = everything_read(sessions, m.key_id)
        retain(conn, batch=7)
        assert old_rows(conn, m.key_id) == {"pings": 0, "reservations": 0}
        rolled = conn.scalar(text("SELECT SUM(pings) FROM ping_days WHERE key_id = :k"),
                             {"k": m.key_id})
    assert rolled == 600
    assert everything_read(sessions, m.key_id) == before
    assert usage_of(sessions, m.target_id) == counters
    assert rtbctl.run(env, "usage", "--check").returncode == 0


def test_a_reservation_whose_call_is_up_is_kept_and_rolled_up_once_it_ends(
        client, market, engine, sessions):
    m = market()
    young = ping(client, m.key)["uuid"]
    with engine.connect() as conn:
        add_history(conn, m, 1)
        # The call was answered just now: the sweep leaves it up.
        conn.execute(text(
            "INSERT INTO calls (reservation_id, target_id, call_id, source, claimed_at,"
            " answered_at, token) SELECT id, target_id, 'up', '127.0.0.1', NOW(3), NOW(3), :token"
            " FROM reservations WHERE key_id = :k AND uuid <> :young"),
            {"k": m.key_id, "token": "a" * 32, "young": young})
        up = conn.scalar(text("SELECT id FROM calls WHERE call_id = 'up' AND ended_at IS NULL"
                              " AND target_id = :t"), {"t": m.target_id})
        retain(conn)
        assert old_rows(conn, m.key_id) == {"pings": 0, "reservations": 1}
        assert conn.scalar(text("SELECT reservation_id FROM calls WHERE id = :c"), {"c": up})
        conn.execute(text("CALL rtb_call_event(:call, :token, 'ended', 0, NULL)"),
                     {"call": up, "token": "a" * 32})
        retain(conn)
        assert old_rows(conn, m.key_id) == {"pings": 0, "reservations": 0}
        assert conn.scalar(text("SELECT COUNT(*) FROM reservations WHERE uuid = :u"),
                           {"u": young}) == 1
        assert conn.scalar(text("SELECT SUM(calls) FROM reservation_days WHERE key_id = :k"),
                           {"k": m.key_id}) == 2


def test_pings_and_claims_go_on_while_retention_works_through_a_big_backlog(
        client, market, engine, database, sessions, env):
    """Each batch locks a bounded number of rows, and none a ping or claim
    needs: claims that would give up after a second's wait all get through
    while the backlog is worked on."""
    m = market(targets=[target(concurrency_cap=5000, hourly_cap=5000)])
    batch = 200
    with engine.connect() as conn:
        add_history(conn, m, 30000, spacing_seconds=10)
    retention = engine.connect()
    retention_id = retention.scalar(text("SELECT CONNECTION_ID()"))
    worker = threading.Thread(target=retain, args=(retention, batch))
    locked: list[int] = []

    def sample() -> None:
        """The rows retention's transaction holds locked, as often as root can read it."""
        while worker.is_alive():
            locked.append(int(database.root_sql(
                "SELECT IFNULL(MAX(trx_rows_locked), 0) FROM information_schema.INNODB_TRX"
                f" WHERE trx_mysql_thread_id = {retention_id}")))

    sampler = threading.Thread(target=sample)
    worker.start()
    sampler.start()
    claimed_while_retaining = 0
    with engine.connect() as conn:
        conn.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
        for _ in range(2000):
            if not worker.is_alive():
                break
            assert claim(conn, ping(client, m.key)["uuid"]) == "claimed"
            claimed_while_retaining += worker.is_alive()
    worker.join(600)
    sampler.join(60)
    most_locked = max(locked, default=0)
    retention.close()
    assert claimed_while_retaining >= 3
    # A batch's transaction is short: the samples may catch none in flight.
    assert most_locked <= 5 * batch
    with engine.connect() as conn:
        assert old_rows(conn, m.key_id) == {"pings": 0, "reservations": 0}
    assert rtbctl.run(env, "usage", "--check").returncode == 0


def test_kamailios_timer_rolls_up_history_past_the_retention_setting(kamailio, market, engine):
    """No operator step: the edge's timer keeps RTB_RETENTION_DAYS (90) on its
    own, once a minute."""
    m = market()
    with engine.connect() as conn:
        conn.execute(text("INSERT INTO pings (key_id, created_at, outcome, duration_ms)"
                          " VALUES (:k, :at, 'reserved', 2)"),
                     {"k": m.key_id, "at": midnight(91)})

        def rolled_up() -> bool:
            return conn.scalar(text("SELECT COUNT(*) FROM ping_days WHERE key_id = :k"),
                               {"k": m.key_id}) == 1

        assert eventually(rolled_up, timeout=90, interval=1)
        assert conn.scalar(text("SELECT COUNT(*) FROM pings WHERE key_id = :k"),
                           {"k": m.key_id}) == 0


def test_usage_counters_of_periods_long_over_go_and_the_current_ones_stay(
        client, market, engine, sessions):
    m = market(targets=[target(daily_cap=10)])
    with engine.connect() as conn:
        assert claim(conn, ping(client, m.key)["uuid"]) == "claimed"
        conn.execute(text("INSERT INTO target_usage_counts VALUES (:t, 'd', :at, 5), (:t, 'm', :at, 5)"),
                     {"t": m.target_id, "at": midnight(OLD_DAYS)})
        retain(conn)
        assert conn.scalar(text("SELECT COUNT(*) FROM target_usage_counts"
                                " WHERE target_id = :t AND starts_at < :cutoff"),
                           {"t": m.target_id, "cutoff": midnight(DAYS)}) == 0
    assert usage_of(sessions, m.target_id)[1:] == (1, 1, 1)
    with sessions() as db:
        assert usage.drift(db) == []
