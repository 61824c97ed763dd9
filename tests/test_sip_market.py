"""Caps at the real SIP edge: a call for an unconfirmed reservation is confirmed
as it arrives, falls back to the next buyer, or gets 486."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, select, text

from app import usage
from app.models import Reservation
from tests.polling import eventually
from tests.sip import dial


def reserve(client, key: str) -> str:
    rtb = client.post("/rtbs.json", query_string={"key": key}).get_json()["rtb"]
    assert rtb["status"] == "reserved", rtb
    return rtb["uuid"]


def row(sessions, uuid: str) -> Reservation:
    with sessions() as db:
        return db.scalar(select(Reservation).where(Reservation.uuid == uuid))


@pytest.fixture
def held(workdir, edge):
    """Dial in the background a call that stays up while the test goes on."""
    pool = ThreadPoolExecutor(1)
    (workdir / "held").mkdir()

    def start(uuid: str, source_ip: str):
        return pool.submit(dial, workdir / "held", edge, uuid, source_ip=source_ip, hold_ms=4000)

    yield start
    pool.shutdown()


def test_an_unconfirmed_call_is_confirmed_as_it_arrives(client, market, buyers, edge, workdir,
                                                       sessions):
    b = buyers()
    m = market(targets=[{"sip_uri": b.uri, "concurrency_cap": 1}])
    uuid = reserve(client, m.key)
    call = dial(workdir, edge, uuid, source_ip=m.ip)
    assert call.returncode == 0, call.log
    used = row(sessions, uuid)
    assert used.status == "completed" and used.confirmed_at is not None


def test_a_full_target_passes_the_call_to_the_next_buyer(client, market, buyers, edge, workdir,
                                                        sessions, held):
    first, second = buyers(), buyers()
    m = market(targets=[{"sip_uri": first.uri, "payout": "20", "concurrency_cap": 1},
                        {"sip_uri": second.uri, "payout": "10"}])
    # Both reserved on the better buyer: reserving does not count against caps.
    holding, arriving = reserve(client, m.key), reserve(client, m.key)
    call = held(holding, m.ip)
    assert first.messages_wait_for(holding)
    moved = dial(workdir, edge, arriving, source_ip=m.ip)
    assert call.result().returncode == 0
    assert moved.returncode == 0, moved.log
    assert f"X-RTB-Reservation: {arriving}" in second.received()
    rerouted = row(sessions, arriving)
    assert (rerouted.target_id, float(rerouted.payout)) == (m.target_ids[1], 10.0)


def test_a_call_with_every_buyer_full_gets_486(client, market, buyers, edge, workdir, sessions,
                                               held):
    b = buyers()
    m = market(targets=[{"sip_uri": b.uri, "concurrency_cap": 1}])
    holding, refused = reserve(client, m.key), reserve(client, m.key)
    call = held(holding, m.ip)
    assert b.messages_wait_for(holding)
    busy = dial(workdir, edge, refused, source_ip=m.ip, refused_with=486)
    assert call.result().returncode == 0
    assert busy.returncode == 0, busy.log
    assert row(sessions, refused).status == "reserved"


@pytest.mark.parametrize("cap", ["concurrency_cap", "hourly_cap", "daily_cap", "monthly_cap"])
def test_twenty_parallel_invites_against_a_cap_of_three_relay_exactly_three(
        client, market, buyers, edge, workdir, sessions, cap):
    b = buyers(calls=20)
    m = market(targets=[{"sip_uri": b.uri, cap: 3}])
    uuids = [reserve(client, m.key) for _ in range(20)]
    burst = dial(workdir, edge, uuids, source_ip=m.ip, rate=100000, hold_ms=3000)
    assert (burst.successful, burst.failed) == (3, 17), burst.log
    assert "486 All Buyers Busy" in burst.log
    assert b.received().count("X-RTB-Reservation:") == 3
    with sessions() as db:
        statuses = db.scalars(select(Reservation.status).where(Reservation.uuid.in_(uuids))).all()
        assert usage.drift(db) == []
    assert statuses.count("completed") == 3


def test_fifty_calls_at_once_all_connect_and_complete(client, market, buyers, edge, workdir,
                                                      sessions):
    """A burst: the edge's children relay 180s and 200s in parallel, and in
    any order; each call still connects, and is recorded from end to end."""
    b = buyers(calls=50)
    m = market(targets=[{"sip_uri": b.uri}])
    uuids = [reserve(client, m.key) for _ in range(50)]
    burst = dial(workdir, edge, uuids, source_ip=m.ip, rate=100000, hold_ms=2000)
    assert (burst.successful, burst.failed) == (50, 0), burst.log

    def all_completed() -> bool:
        with sessions() as db:
            return set(db.scalars(select(Reservation.status)
                                  .where(Reservation.uuid.in_(uuids)))) == {"completed"}
    # An event a deadlock turned away is queued, and recorded within seconds.
    assert eventually(all_completed, 10)


def test_an_ended_call_frees_its_slot(client, market, buyers, edge, workdir, sessions):
    b = buyers(calls=2)
    m = market(targets=[{"sip_uri": b.uri, "concurrency_cap": 1}])
    first, second = reserve(client, m.key), reserve(client, m.key)
    assert dial(workdir, edge, first, source_ip=m.ip).returncode == 0
    assert row(sessions, first).calls[0].ended_at is not None
    call = dial(workdir, edge, second, source_ip=m.ip)
    assert call.returncode == 0, call.log


def test_an_invite_waits_for_a_confirm_in_flight_on_its_target(client, market, buyers, edge,
                                                               workdir, database, sessions):
    """As in test_market: with a confirm holding the target, the edge must wait, then
    find the target full and answer 486, not relay a call the buyer has no room for."""
    b = buyers()
    m = market(targets=[{"sip_uri": b.uri, "concurrency_cap": 1}])
    first, second = reserve(client, m.key), reserve(client, m.key)
    engine = create_engine(database.url("rtb"), isolation_level="READ COMMITTED")
    with engine.connect() as in_flight, ThreadPoolExecutor(1) as pool:
        in_flight.execute(text("SELECT id FROM targets WHERE id = :t FOR UPDATE"), {"t": m.target_id})
        in_flight.execute(text("UPDATE reservations SET status = 'confirmed', confirmed_at = NOW() "
                               "WHERE uuid = :u"), {"u": first})
        call = pool.submit(dial, workdir, edge, second, source_ip=m.ip, refused_with=486)
        with pytest.raises(TimeoutError):
            call.result(timeout=1)
        in_flight.commit()
        assert call.result(timeout=60).returncode == 0
    engine.dispose()
    assert row(sessions, second).status == "reserved"
    assert "X-RTB-Reservation" not in b.received()
