"""The usage counters caps are decided by: exact under concurrency and across
period boundaries, equal to a recount from history, and cheap whatever the
history. Procedures are called as Kamailio calls them; NOW() is moved with
MariaDB's `SET timestamp`, which fakes it for one session."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import OperationalError

from app import usage
from app.models import target_usage
from app.stack.mariadb import upgrade_schema
from tests.polling import eventually
from tests.test_market import hold_heavier, innodb_deadlocks, ping, target, wait_for_a_lock_wait

ZONE = "America/New_York"
PERIOD_CAPS = ["hourly_cap", "daily_cap", "monthly_cap"]


@pytest.fixture
def engine(database):
    made = create_engine(database.url("rtb"), isolation_level="AUTOCOMMIT")
    yield made
    made.dispose()


def owner(conn, uuid: str) -> int:
    return conn.scalar(text("SELECT publisher_id FROM reservations WHERE uuid = :u"), {"u": uuid})


def confirm(conn, uuid: str, claim: bool, fallback: bool) -> str:
    """rtb_confirm as Kamailio runs it for an INVITE (claim: the uuid as
    Call-ID), or as the app runs it for a confirm, for the reservation's owner."""
    conn.execute(text("CALL rtb_confirm(:u, :p, :claim, :fallback, IF(:claim, :u, NULL),"
                      " '127.0.0.1', 'sip', @r, @d, @c, @t)"),
                 {"u": uuid, "p": owner(conn, uuid), "claim": claim, "fallback": fallback})
    return conn.scalar(text("SELECT @r"))


def claim(conn, uuid: str, fallback: bool = False) -> str:
    """Confirm and claim, with the reservation's own target alone; with
    fallback, the reservation's other candidates are tried too."""
    return confirm(conn, uuid, claim=True, fallback=fallback)


def claim_new(conn, client, key: str, count: int) -> None:
    """Ping count times and claim each reservation, as its INVITE would."""
    for _ in range(count):
        assert claim(conn, ping(client, key)["uuid"]) == "claimed"


def confirm_only(conn, uuid: str) -> str:
    return confirm(conn, uuid, claim=False, fallback=False)


def call_event(conn, uuid: str, event: str, code: int = 200) -> None:
    """An event of the reservation's latest call, named as its claim named it."""
    call, token = conn.execute(text(
        "SELECT c.id, c.token FROM calls c JOIN reservations r ON r.id = c.reservation_id"
        " WHERE r.uuid = :u ORDER BY c.id DESC LIMIT 1"), {"u": uuid}).one()
    conn.execute(text("CALL rtb_call_event(:call, :token, :e, :c, NULL)"),
                 {"call": call, "token": token, "e": event, "c": code})


def retried(step, *args):
    """As Kamailio sends an event again, and a caller dials again, when the
    database refused: under heavy contention a deadlock (1213) still escapes
    the procedures' own retry now and then, on the landed code too."""
    for attempt in range(5):
        try:
            return step(*args)
        except OperationalError as error:
            if error.orig.args[0] != 1213 or attempt == 4:
                raise


def usage_of(sessions, target_id: int) -> tuple[int, int, int, int]:
    with sessions() as db:
        return tuple(db.execute(select(target_usage.c.live, target_usage.c.this_hour,
                                       target_usage.c.today, target_usage.c.this_month)
                                .where(target_usage.c.target_id == target_id)).one())


def drift(sessions) -> list[dict]:
    with sessions() as db:
        return usage.drift(db)


def period_start(kind: str, zone: str, now: datetime) -> datetime:
    """The start of the current hour, day or month in a zone, as a UTC instant."""
    local = now.astimezone(ZoneInfo(zone)).replace(minute=0, second=0, microsecond=0)
    if kind != "hourly_cap":
        local = local.replace(hour=0)
    if kind == "monthly_cap":
        local = local.replace(day=1)
    return local.replace(tzinfo=None).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


@pytest.mark.parametrize("cap", PERIOD_CAPS)
def test_a_period_cap_fills_in_its_period_and_opens_in_the_next(client, market, engine, sessions,
                                                                 cap):
    """Two charges just before the period's start fill a cap of 2; just after
    it the cap has room for two more. A call confirmed before the start that
    fails after it gives back a charge of the old period, not of the new."""
    m = market(targets=[target(**{cap: 2}, timezone=ZONE)], ttl=600)
    uuids = [ping(client, m.key)["uuid"] for _ in range(6)]
    start = period_start(cap, ZONE, datetime.now(UTC))
    with engine.connect() as conn:
        conn.execute(text("SET timestamp = :t"), {"t": start.timestamp() - 10})
        assert [claim(conn, uuids[0]), confirm_only(conn, uuids[1]), claim(conn, uuids[2])] \
            == ["claimed", "confirmed", "full"]
        conn.execute(text("SET timestamp = :t"), {"t": start.timestamp() + 1})
        call_event(conn, uuids[0], "failed", 486)
        assert [claim(conn, uuids[3]), claim(conn, uuids[4]), confirm_only(conn, uuids[5])] \
            == ["claimed", "claimed", "full"]
        conn.execute(text("SET timestamp = DEFAULT"))
    assert usage_of(sessions, m.target_id)[1 + PERIOD_CAPS.index(cap)] == 2
    assert drift(sessions) == []


def test_a_charge_given_back_in_its_own_period_frees_the_cap(client, market, engine, sessions):
    m = market(targets=[target(hourly_cap=1)])
    first, second = ping(client, m.key)["uuid"], ping(client, m.key)["uuid"]
    with engine.connect() as conn:
        assert claim(conn, first) == "claimed"
        assert claim(conn, second) == "full"
        call_event(conn, first, "failed", 486)
        # Given back to the publisher, still confirmed: it holds the cap until it expires.
        assert usage_of(sessions, m.target_id) == (1, 1, 1, 1)
        conn.execute(text("UPDATE reservations SET expires_at = NOW() - INTERVAL 1 SECOND"
                          " WHERE uuid = :u"), {"u": first})
        assert usage_of(sessions, m.target_id) == (0, 0, 0, 0)
        assert claim(conn, second) == "claimed"
    assert drift(sessions) == []


def test_a_new_time_zone_counts_the_targets_periods_again(client, market, engine, sessions):
    m = market(targets=[target(hourly_cap=5)])
    with engine.connect() as conn:
        claim_new(conn, client, m.key, 3)
        # Half an hour off UTC: its hours start at other instants.
        conn.execute(text("UPDATE targets SET timezone = 'Asia/Kolkata' WHERE id = :t"),
                     {"t": m.target_id})
    assert drift(sessions) == []


def handler_reads(conn) -> int:
    return sum(int(value) for name, value in conn.execute(text(
        "SHOW SESSION STATUS LIKE 'Handler_read%'")) if name != "Handler_read_retry")


def test_reading_a_targets_usage_reads_none_of_its_history(market, engine, sessions):
    """What a ping and a claim read for a target stays the same after 3,000
    settled charges of this month are added to its history."""
    m = market(targets=[target(concurrency_cap=9999, hourly_cap=9999, daily_cap=9999,
                               monthly_cap=9999)])
    read = text("SELECT * FROM target_usage WHERE target_id = :t")

    def rows_read(conn) -> int:
        before = handler_reads(conn)
        conn.execute(read, {"t": m.target_id}).all()
        return handler_reads(conn) - before

    with engine.connect() as conn:
        empty = rows_read(conn)
        conn.execute(text(
            "INSERT INTO reservations (uuid, key_id, publisher_id, campaign_id, target_id, payout,"
            " min_seconds, tags, status, created_at, expires_at, confirmed_at)"
            " SELECT UUID(), :k, :p, :c, :t, 1, 60, '{}', 'completed', NOW(), NOW(), NOW()"
            " FROM seq_1_to_3000"),
            {"k": m.key_id, "p": m.publisher_id, "c": m.campaign_id, "t": m.target_id})
        assert usage_of(sessions, m.target_id)[1:] == (3000, 3000, 3000)
        assert rows_read(conn) == empty
    assert drift(sessions) == []


def test_counters_equal_a_recount_after_concurrent_pings_confirms_calls_and_sweeps(
        app, market, engine, sessions):
    """Eight workers ping, confirm, claim, answer, end and fail calls on four
    capped targets until some twenty calls are done, while the expiry sweep runs, as Kamailio
    runs it; then the counters equal a recount from history."""
    m = market(targets=[target("20", concurrency_cap=3), target("15", hourly_cap=40),
                        target("12", daily_cap=60), target("10", monthly_cap=1000)], ttl=2)
    halt = threading.Event()
    done: list[str] = []

    def work(seed: int) -> None:
        rng, client = random.Random(seed), app.test_client()
        with engine.connect() as conn:
            while not halt.is_set():
                rtb = client.post("/rtbs.json", query_string={"key": m.key}).get_json()["rtb"]
                if "uuid" not in rtb:
                    continue
                uuid, step = rtb["uuid"], rng.random()
                if step < 0.3:
                    client.put(f"/rtbs/{uuid}.json", json={"key": m.key, "status": "confirmed"})
                    continue
                if retried(claim, conn, uuid, True) != "claimed":
                    continue
                if step < 0.5:
                    retried(call_event, conn, uuid, "failed", 486)
                    continue
                retried(call_event, conn, uuid, "answered")
                if step < 0.9:
                    retried(call_event, conn, uuid, "ended")
                done.append(uuid)

    def sweep() -> None:
        with engine.connect() as conn:
            while not halt.is_set():
                # A sweep chosen as a deadlock's victim is Kamailio's next tick's to do.
                with contextlib.suppress(OperationalError):
                    conn.execute(text("CALL rtb_expire(1)"))
                time.sleep(0.2)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    threads.append(threading.Thread(target=sweep))
    for thread in threads:
        thread.start()
    # Enough calls to mix every step, however loaded the machine; bounded in time.
    eventually(lambda: len(done) > 20, 120)
    halt.set()
    for thread in threads:
        thread.join(60)
    assert len(done) > 20
    assert drift(sessions) == []


def test_a_release_caught_in_a_deadlock_on_the_counters_is_tried_again(client, market, engine,
                                                                       database, sessions):
    """A failed call gives its charge back under the call's lock, then the
    counters' row lock; a heavier transaction holding the counters and then
    asking for the call deadlocks with it. The event is tried again."""
    m = market(targets=[target(hourly_cap=5)])
    uuid = ping(client, m.key)["uuid"]
    with engine.connect() as conn:
        assert claim(conn, uuid) == "claimed"
    before = innodb_deadlocks(database)
    locking = create_engine(database.url("rtb"), isolation_level="READ COMMITTED")
    with locking.connect() as other, engine.connect() as kamailio, ThreadPoolExecutor(1) as pool:
        hold_heavier(other)
        other.execute(text("SELECT * FROM target_usage_counts WHERE target_id = :t FOR UPDATE"),
                      {"t": m.target_id})
        failed = pool.submit(call_event, kamailio, uuid, "failed", 486)
        wait_for_a_lock_wait(database)
        other.execute(text("SELECT id FROM calls WHERE call_id = :u FOR UPDATE"), {"u": uuid})
        other.rollback()
        failed.result(timeout=30)
    locking.dispose()
    assert innodb_deadlocks(database) == before + 1
    assert usage_of(sessions, m.target_id) == (1, 1, 1, 1)
    assert drift(sessions) == []


def test_deleting_history_takes_this_months_charges_off_and_waits_for_no_counter(
        market, engine, database, sessions):
    """Retention deletes old history in batches while claims run: a charge
    older than any current month must not touch (and wait for) the counters."""
    m = market(targets=[target(monthly_cap=10)])
    insert = text(
        "INSERT INTO reservations (uuid, key_id, publisher_id, campaign_id, target_id, payout,"
        " min_seconds, tags, status, created_at, expires_at, confirmed_at)"
        " VALUES (UUID(), :k, :p, :c, :t, 1, 60, '{}', 'completed', :at, :at, :at)")
    keys = {"k": m.key_id, "p": m.publisher_id, "c": m.campaign_id, "t": m.target_id}
    old, now = datetime.now(UTC) - timedelta(days=40), datetime.now(UTC)
    with engine.connect() as conn:
        conn.execute(text("SET time_zone = '+00:00'"))
        for at in (old, now, now):
            conn.execute(insert, {**keys, "at": at.replace(tzinfo=None)})
    assert usage_of(sessions, m.target_id)[3] == 2
    locking = create_engine(database.url("rtb"), isolation_level="READ COMMITTED")
    with locking.connect() as claim_in_flight, engine.connect() as retention:
        claim_in_flight.execute(text("SELECT * FROM target_usage_counts WHERE target_id = :t"
                                     " FOR UPDATE"), {"t": m.target_id})
        retention.execute(text("SET innodb_lock_wait_timeout = 1"))
        retention.execute(text("DELETE FROM reservations WHERE target_id = :t"
                               " AND confirmed_at < NOW() - INTERVAL 32 DAY"), {"t": m.target_id})
        claim_in_flight.rollback()
        retention.execute(text("DELETE FROM reservations WHERE target_id = :t LIMIT 1"),
                          {"t": m.target_id})
    locking.dispose()
    assert usage_of(sessions, m.target_id)[3] == 1
    assert drift(sessions) == []


def test_an_upgrade_counts_the_targets_that_have_no_counters(client, market, engine,
                                                                         database, sessions):
    m = market(targets=[target(daily_cap=10)])
    with engine.connect() as conn:
        claim_new(conn, client, m.key, 2)
        conn.execute(text("DELETE FROM target_usage_counts WHERE target_id = :t"),
                     {"t": m.target_id})
    assert usage_of(sessions, m.target_id)[2] == 0
    upgrade_schema(database.url("rtb"))
    assert usage_of(sessions, m.target_id)[2] == 2
    assert drift(sessions) == []


@pytest.mark.parametrize("cap", PERIOD_CAPS)
def test_parallel_claims_either_side_of_a_period_start_fill_each_period_exactly(
        client, market, database, sessions, cap):
    """20 INVITEs' claims at once, half a second before the period starts and
    half a second after (each in a session whose NOW() says so), against a cap
    of 3: each period takes exactly 3, whichever order the locks are granted."""
    m = market(targets=[target(**{cap: 3}, timezone=ZONE)], ttl=600)
    uuids = [ping(client, m.key)["uuid"] for _ in range(20)]
    start = period_start(cap, ZONE, datetime.now(UTC)).timestamp()
    engine = create_engine(database.url("rtb"), isolation_level="AUTOCOMMIT", pool_size=20)

    def claim_at(n: int) -> tuple[bool, str]:
        with engine.connect() as conn:
            conn.execute(text("SET timestamp = :t"), {"t": start + (0.5 if n % 2 else -0.5)})
            return n % 2 == 1, retried(claim, conn, uuids[n])

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(claim_at, range(20)))
    engine.dispose()
    assert [after for after, result in results if result == "claimed"].count(False) == 3
    assert [after for after, result in results if result == "claimed"].count(True) == 3
    assert usage_of(sessions, m.target_id)[1 + PERIOD_CAPS.index(cap)] == 3
    assert drift(sessions) == []
