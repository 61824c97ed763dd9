"""The marketplace over HTTP and the real database: bidding, rules, caps,
confirming, Ping Shield, rate limits and the ping log."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, func, select, text, update

from app import admin, create_app, pings, usage
from app.models import Reservation
from app.settings import PingLimits
from app.targeting import DAYS
from tests.market import expire
from tests.polling import eventually
from tests.procedures import call_event, claim


def ping(client, key: str, **params) -> dict:
    response = client.post("/rtbs.json", query_string={"key": key, **params})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["rtb"]


def confirm(client, key: str, uuid: str, method: str = "put"):
    return getattr(client, method)(f"/rtbs/{uuid}.json", json={"key": key, "status": "confirmed"})


def target(payout="10", **rules) -> dict:
    return {"payout": payout, **rules}


def test_the_highest_payout_wins_and_its_terms_are_promised(client, market):
    m = market(targets=[target("10"), target("15", min_seconds=90), target("12")])
    rtb = ping(client, m.key)
    assert (rtb["retreaver_payout"], rtb["retreaver_seconds"]) == (15.0, 90)


def test_equal_payouts_go_to_priority_1_first(client, market, sessions):
    m = market(targets=[target("10", priority=2), target("10", priority=1)])
    uuids = [ping(client, m.key)["uuid"] for _ in range(5)]
    with sessions() as db:
        chosen = set(db.scalars(select(Reservation.target_id).where(Reservation.uuid.in_(uuids))))
    assert chosen == {m.target_ids[1]}


def test_a_closed_target_is_not_offered(client, market):
    other_day = DAYS[(datetime.now(UTC).weekday() + 3) % 7]
    closed = market(targets=[target(hours=f"{other_day} 00:00-24:00", timezone="UTC")])
    assert ping(client, closed.key) == {"status": "rejected", "reason": "closed"}
    open_now = market(targets=[target(hours="daily 00:00-24:00", timezone="Pacific/Auckland")])
    assert ping(client, open_now.key)["status"] == "reserved"


@pytest.mark.parametrize("params, status", [
    ({"caller_number": "+13105550123"}, "reserved"),          # area code 310: California
    ({"caller_number": "+12125550123"}, "rejected"),          # New York
    ({}, "rejected"),                                          # state unknown
    ({"caller_state": "ca"}, "reserved"),
    ({"caller_zip": "94105"}, "reserved"),                     # San Francisco
    ({"caller_number": "+12125550123", "caller_state": "CA"}, "reserved"),  # the tag wins
])
def test_a_state_rule_matches_the_callers_state(client, market, params, status):
    m = market(targets=[target(states="CA,TX")])
    rtb = ping(client, m.key, **params)
    assert rtb["status"] == status
    if status == "rejected":
        assert rtb["reason"] == "geo"


def test_a_zip_rule_matches_by_prefix(client, market):
    m = market(targets=[target(zips="902,100")])
    assert ping(client, m.key, caller_zip="90210")["status"] == "reserved"
    assert ping(client, m.key, caller_zip="94105") == {"status": "rejected", "reason": "geo"}


def test_a_tag_rule_needs_one_of_its_values(client, market):
    m = market(targets=[target(tag_rules={"insured": ["yes", "y"]})])
    assert ping(client, m.key, insured="YES")["status"] == "reserved"
    assert ping(client, m.key, insured="no") == {"status": "rejected", "reason": "tags"}
    assert ping(client, m.key) == {"status": "rejected", "reason": "tags"}


def test_a_disabled_target_leaves_no_target(client, market):
    m = market(targets=[target(enabled=False)])
    assert ping(client, m.key) == {"status": "rejected", "reason": "no_target"}


def test_reserving_does_not_count_against_caps_but_confirming_does(client, market):
    m = market(targets=[target(concurrency_cap=1)])
    first, second = ping(client, m.key), ping(client, m.key)
    assert first["status"] == second["status"] == "reserved"
    assert confirm(client, m.key, first["uuid"]).get_json()["rtb"]["status"] == "confirmed"
    assert ping(client, m.key) == {"status": "rejected", "reason": "capped"}


def test_a_confirmed_reservation_keeps_its_sip_address(client, market):
    m = market()
    made = ping(client, m.key, caller_number="2025550123")
    for method in ("put", "patch"):
        rtb = confirm(client, m.key, made["uuid"], method).get_json()["rtb"]
        assert rtb["status"] == "confirmed"
        assert rtb["sip_address"] == made["sip_address"]
    shown = client.get(f"/rtbs/{made['uuid']}.json", query_string={"key": m.key})
    assert shown.get_json()["rtb"]["status"] == "confirmed"


def test_a_confirm_needs_status_confirmed(client, market):
    m = market()
    uuid = ping(client, m.key)["uuid"]
    response = client.put(f"/rtbs/{uuid}.json", json={"key": m.key, "status": "maybe"})
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_status"


def test_a_confirm_after_the_target_filled_up_is_no_target(client, market):
    m = market(targets=[target(daily_cap=1)])
    first, second = ping(client, m.key), ping(client, m.key)
    confirm(client, m.key, first["uuid"])
    assert confirm(client, m.key, second["uuid"]).get_json() == {
        "rtb": {"uuid": second["uuid"], "status": "no-target"}}


@pytest.mark.parametrize("cap", ["concurrency_cap", "hourly_cap", "daily_cap", "monthly_cap"])
def test_fifty_parallel_confirms_against_a_cap_of_five_confirm_exactly_five(app, market, sessions,
                                                                            cap):
    m = market(targets=[target(**{cap: 5})])
    uuids = [ping(app.test_client(), m.key)["uuid"] for _ in range(50)]

    def confirm_one(uuid):
        return confirm(app.test_client(), m.key, uuid).get_json()["rtb"]["status"]

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(confirm_one, uuids))
    assert statuses.count("confirmed") == 5
    assert statuses.count("no-target") == 45
    with sessions() as db:
        confirmed = db.scalar(select(func.count()).where(
            Reservation.target_id == m.target_id, Reservation.status == "confirmed"))
        assert usage.drift(db) == []
    assert confirmed == 5


def test_an_auto_confirm_key_confirms_at_ping_time_until_the_caps_fill(client, market):
    m = market(targets=[target(hourly_cap=2)], auto_confirm=True)
    assert [ping(client, m.key)["status"] for _ in range(2)] == ["confirmed", "confirmed"]
    assert ping(client, m.key) == {"status": "rejected", "reason": "capped"}


def test_a_repeat_ping_for_a_live_caller_gets_the_same_reservation(client, market, sessions):
    m = market()
    first = ping(client, m.key, caller_number="2025550140")
    again = ping(client, m.key, caller_number="(202) 555-0140")
    assert (again["uuid"], again["expires_at"]) == (first["uuid"], first["expires_at"])
    assert again["retreaver_ping_shield"] is True
    assert "retreaver_ping_shield" not in first
    with sessions() as db:
        assert db.scalar(select(func.count()).where(Reservation.key_id == m.key_id)) == 1


def test_a_repeat_ping_after_a_call_that_failed_shows_that_call(client, market, sessions):
    """rtb_ping answers with the reservation and its latest call as JSON; a
    busy buyer's call gave the reservation back, still confirmed."""
    m = market()
    first = ping(client, m.key, caller_number="2025550147")
    with sessions() as db:
        claimed = claim(db, first["uuid"], m.publisher_id, f"busy-{first['uuid']}")
        call_event(db, claimed, "failed", 486)
        db.commit()
    again = ping(client, m.key, caller_number="2025550147")
    assert (again["uuid"], again["status"], again["retreaver_ping_shield"]) == (
        first["uuid"], "confirmed", True)
    assert (again["retreaver_payout"], again["expires_at"]) == (
        first["retreaver_payout"], first["expires_at"])
    call = again["call"]
    assert (call["via"], call["final_status"], call["converted"], call["talk_seconds"],
            call["answered_at"], call["payout_earned"]) == ("sip", 486, False, None, None, 0.0)
    assert call["claimed_at"] <= call["ended_at"]


def test_racing_pings_for_one_caller_make_one_reservation(app, market, sessions):
    m = market()
    with ThreadPoolExecutor(10) as pool:
        uuids = set(pool.map(lambda _: ping(app.test_client(), m.key,
                                            caller_number="2025550141")["uuid"], range(10)))
    assert len(uuids) == 1
    with sessions() as db:
        assert db.scalar(select(func.count()).where(Reservation.key_id == m.key_id)) == 1


def test_the_duplicate_scope_is_the_key_or_the_campaign(client, market):
    first = market(duplicate_scope="campaign")
    same_campaign = market(campaign_id=first.campaign_id, publisher_id=first.publisher_id,
                           duplicate_scope="campaign")
    uuid = ping(client, first.key, caller_number="2025550142")["uuid"]
    assert ping(client, same_campaign.key, caller_number="2025550142")["uuid"] == uuid
    per_key = market(campaign_id=first.campaign_id)
    assert ping(client, per_key.key, caller_number="2025550142")["uuid"] != uuid


def test_a_campaign_duplicate_from_another_publisher_is_rejected_and_learns_nothing(
        client, market, sessions):
    first = market(duplicate_scope="campaign")
    other = market(campaign_id=first.campaign_id, duplicate_scope="campaign")
    ping(client, first.key, caller_number="2025550146")
    assert ping(client, other.key, caller_number="2025550146") == {
        "status": "rejected", "reason": "duplicate"}
    with sessions() as db:
        assert db.scalar(select(func.count()).where(Reservation.key_id == other.key_id)) == 0
    assert ping(client, first.key, caller_number="2025550146")["retreaver_ping_shield"] is True


def test_an_expired_reservation_does_not_shield_a_new_ping(client, market, sessions):
    m = market()
    first = ping(client, m.key, caller_number="2025550143")["uuid"]
    expire(sessions, first)
    assert ping(client, m.key, caller_number="2025550143")["uuid"] != first


def test_a_caller_on_a_live_call_is_rejected_as_duplicate(client, market, sessions):
    m = market()
    first = ping(client, m.key, caller_number="2025550144")["uuid"]
    with sessions() as db:
        db.execute(update(Reservation).where(Reservation.uuid == first).values(status="claimed"))
        db.commit()
    assert ping(client, m.key, caller_number="2025550144") == {
        "status": "rejected", "reason": "duplicate"}


def test_over_the_rate_limit_a_ping_gets_429_with_retry_after(client, market):
    m = market(rate_limit=1)
    answers = [client.post("/rtbs.json", query_string={"key": m.key}) for _ in range(5)]
    limited = [a for a in answers if a.status_code == 429]
    # Five pings straddle at most one second boundary: at most two get through.
    assert len(limited) >= 3
    assert limited[0].headers["Retry-After"] == "1"
    assert limited[0].get_json()["error"]["code"] == "rate_limited"


def test_a_key_without_a_rate_limit_of_its_own_has_the_default_one(settings, sessions, market):
    limited_app = create_app(replace(settings, ping_limits=PingLimits(rate_limit=1)), sessions)
    client = limited_app.test_client()
    default, own = market(), market(rate_limit=50)
    answers = [client.post("/rtbs.json", query_string={"key": m.key}).status_code
               for m in (default, own) for _ in range(5)]
    # Five pings straddle at most one second boundary: at most two get through.
    assert answers[:5].count(429) >= 3
    assert answers[5:] == [200] * 5


def test_a_key_holds_at_most_the_limit_of_pool_numbers_and_then_gets_none(
        settings, sessions, market):
    limited_app = create_app(replace(settings, ping_limits=PingLimits(held_numbers=2)), sessions)
    m = market()
    with sessions() as db:
        numbers = {admin.add_number(db, f"+1800556{n:04d}", m.campaign_id).number
                   for n in range(4)}
        db.commit()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: ping(limited_app.test_client(), m.key), range(8)))
    held = [rtb["inbound_number"] for rtb in got if rtb["inbound_number"]]
    assert len(held) == 2 and set(held) <= numbers
    assert all(rtb["status"] == "reserved" and rtb["sip_address"] for rtb in got)


def test_a_key_may_require_a_caller_number(client, market):
    strict = market(require_caller_number=True)
    response = client.post("/rtbs.json", query_string={"key": strict.key})
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "missing_caller_number"
    assert ping(client, strict.key, caller_number="2025550145")["status"] == "reserved"


def test_every_ping_is_logged_with_its_outcome_and_reason(client, market, sessions):
    m = market(targets=[target(states="CA")])
    ping(client, m.key, caller_state="CA")
    ping(client, m.key, caller_state="NY")
    client.post("/rtbs.json", query_string={"key": m.key, "caller_number": "12"})
    with sessions() as db:
        rows = pings.summary(db, [m.key_id], datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1))
    counts = {(r["outcome"], r["reason"]): r["pings"] for r in rows}
    assert counts == {("reserved", None): 1, ("rejected", "geo"): 1,
                      ("error", "invalid_caller_number"): 1}
    assert all(r["max_ms"] > 0 for r in rows)


def test_a_confirm_waits_for_a_confirm_in_flight_on_its_target(app, market, database):
    """Hold what rtb_confirm holds while it charges a target (its row lock, and the
    reservation it is confirming, uncommitted): another confirm must wait, then
    see the target full. Without the lock it would count the target empty."""
    m = market(targets=[target(concurrency_cap=1)])
    first, second = ping(app.test_client(), m.key)["uuid"], ping(app.test_client(), m.key)["uuid"]
    engine = create_engine(database.url("rtb"), isolation_level="READ COMMITTED")
    with engine.connect() as in_flight, ThreadPoolExecutor(1) as pool:
        in_flight.execute(text("SELECT id FROM targets WHERE id = :t FOR UPDATE"), {"t": m.target_id})
        in_flight.execute(text("UPDATE reservations SET status = 'confirmed', confirmed_at = NOW() "
                               "WHERE uuid = :u"), {"u": first})
        waiting = pool.submit(lambda: confirm(app.test_client(), m.key, second).get_json())
        with pytest.raises(TimeoutError):
            waiting.result(timeout=1)
        in_flight.commit()
        assert waiting.result(timeout=30)["rtb"]["status"] == "no-target"
    engine.dispose()


def innodb_deadlocks(database) -> int:
    return int(database.root_sql("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'").split()[1])


def hold_heavier(conn, rows: int = 200) -> None:
    """Write rows in conn's transaction: InnoDB then rolls back the other side of a deadlock."""
    conn.execute(text("INSERT INTO caller_reservations (scope, caller_number) "
                      f"SELECT CONCAT('deadlock-', seq), '+12025550100' FROM seq_1_to_{rows}"))


def wait_for_a_lock_wait(database) -> None:
    assert eventually(lambda: int(database.root_sql(
        "SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS")) > 0, 10)


def test_a_confirm_caught_in_a_deadlock_is_tried_again(app, market, database):
    """rtb_confirm locks the reservation, then its target. A transaction that
    holds the target and then asks for the reservation deadlocks with it;
    InnoDB rolls back the lighter of the two, the confirm, which tries again
    and confirms once the other is done, instead of failing."""
    m = market()
    uuid = ping(app.test_client(), m.key)["uuid"]
    engine = create_engine(database.url("rtb"), isolation_level="READ COMMITTED")

    def confirm_it(conn) -> str:
        conn.execute(text("CALL rtb_confirm(:u, :p, FALSE, FALSE, NULL, NULL, NULL, @r, @d, @c, @t)"),
                     {"u": uuid, "p": m.publisher_id})
        return conn.scalar(text("SELECT @r"))

    before = innodb_deadlocks(database)
    with engine.connect() as other, \
            engine.connect().execution_options(isolation_level="AUTOCOMMIT") as confirming, \
            ThreadPoolExecutor(1) as pool:
        hold_heavier(other)
        other.execute(text("SELECT id FROM targets WHERE id = :t FOR UPDATE"), {"t": m.target_id})
        result = pool.submit(confirm_it, confirming)
        wait_for_a_lock_wait(database)
        other.execute(text("SELECT id FROM reservations WHERE uuid = :u FOR UPDATE"), {"u": uuid})
        other.rollback()
        assert result.result(timeout=30) == "confirmed"
    assert innodb_deadlocks(database) == before + 1
    engine.dispose()


def test_a_call_event_caught_in_a_deadlock_is_tried_again(app, market, database):
    """rtb_call_event locks the call, then its reservation; a heavier transaction
    holding the reservation and then asking for the call deadlocks with it. The
    event is tried again and recorded, instead of failing back to Kamailio."""
    m = market()
    uuid = ping(app.test_client(), m.key)["uuid"]
    engine = create_engine(database.url("rtb"), isolation_level="READ COMMITTED")

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as setup:
        call = claim(setup, uuid, m.publisher_id, uuid)
        call_event(setup, call, "answered", 200)
    before = innodb_deadlocks(database)
    with engine.connect() as other, \
            engine.connect().execution_options(isolation_level="AUTOCOMMIT") as kamailio, \
            ThreadPoolExecutor(1) as pool:
        hold_heavier(other)
        other.execute(text("SELECT id FROM reservations WHERE uuid = :u FOR UPDATE"), {"u": uuid})
        ended = pool.submit(call_event, kamailio, call, "ended")
        wait_for_a_lock_wait(database)
        other.execute(text("SELECT id FROM calls WHERE call_id = :u FOR UPDATE"), {"u": uuid})
        other.rollback()
        ended.result(timeout=30)
    assert innodb_deadlocks(database) == before + 1
    with engine.connect() as db:
        assert db.execute(text("SELECT c.final_status, r.status FROM calls c JOIN reservations r "
                               "ON r.id = c.reservation_id WHERE r.uuid = :u"), {"u": uuid}).all() \
            == [(200, "completed")]
    engine.dispose()


def test_a_ping_caught_in_a_deadlock_is_tried_again(app, market, database):
    """A ping holds its key's rate window, then share-locks its target to
    insert the reservation (a foreign key check). A heavier transaction holding
    the target and then asking for the rate window deadlocks with it; the ping,
    rolled back whole, is tried again and reserves, instead of answering 500."""
    m = market()
    ping(app.test_client(), m.key)
    engine = create_engine(database.url("rtb"), isolation_level="READ COMMITTED")
    before = innodb_deadlocks(database)
    with engine.connect() as other, ThreadPoolExecutor(1) as pool:
        hold_heavier(other)
        other.execute(text("SELECT id FROM targets WHERE id = :t FOR UPDATE"), {"t": m.target_id})
        answer = pool.submit(ping, app.test_client(), m.key)
        wait_for_a_lock_wait(database)
        other.execute(text("SELECT key_id FROM key_rate_windows WHERE key_id = :k FOR UPDATE"),
                      {"k": m.key_id})
        other.rollback()
        assert answer.result(timeout=30)["status"] == "reserved"
    assert innodb_deadlocks(database) == before + 1
    engine.dispose()
