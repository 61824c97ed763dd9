"""The PSTN half: a whitelisted carrier delivers a call for one of our pool
numbers, and the edge finds its reservation by number and caller ID."""

from __future__ import annotations

import itertools
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from app import admin
from app.models import Reservation
from tests.market import expire, next_loopback
from tests.sip import dial

_numbers = itertools.count(100)


@pytest.fixture
def pstn(sessions):
    """A carrier on a fresh loopback address, and a pool number for a campaign."""

    def make(campaign_id: int) -> tuple[str, str]:
        ip, number = next_loopback(), f"+1800555{next(_numbers):04d}"
        with sessions() as db:
            admin.add_carrier(db, f"carrier-{uuidlib.uuid4().hex[:8]}", f"{ip}/32")
            admin.add_number(db, number, campaign_id)
            db.commit()
        return ip, number

    return make


def ping(client, key: str, **params) -> dict:
    return client.post("/rtbs.json", query_string={"key": key, **params}).get_json()["rtb"]


def test_callers_sharing_a_number_are_told_apart_by_caller_id(client, market, buyers, pstn, edge,
                                                              workdir, sessions):
    b = buyers()
    m = market(b.uri)
    carrier_ip, number = pstn(m.campaign_id)
    first = ping(client, m.key, caller_number="2025550191")
    second = ping(client, m.key, caller_number="2025550192")
    assert first["inbound_number"] == second["inbound_number"] == number
    # Dialled as carriers send it: no plus sign, caller ID in P-Asserted-Identity.
    # The older of the two: the caller ID, not recency, decides.
    call = dial(workdir, edge, number.lstrip("+"), source_ip=carrier_ip,
                caller_id=("pai", "+12025550191"))
    assert call.returncode == 0, call.log
    assert b.wait() == 0
    assert f"X-RTB-Reservation: {first['uuid']}" in b.received()
    with sessions() as db:
        row = db.scalar(select(Reservation).where(Reservation.uuid == first["uuid"]))
        assert [(c.via, c.source) for c in row.calls] == [("pstn", carrier_ip)]


def test_a_number_held_for_a_reservation_without_caller_number_connects(client, market, buyers,
                                                                       pstn, edge, workdir):
    b = buyers()
    m = market(b.uri)
    carrier_ip, number = pstn(m.campaign_id)
    held = ping(client, m.key)
    assert held["inbound_number"] == number and held["sip_address"]
    call = dial(workdir, edge, number, source_ip=carrier_ip, caller_id=("from", "2125550111"))
    assert call.returncode == 0, call.log
    assert f"X-RTB-Reservation: {held['uuid']}" in b.received()


def test_a_carrier_call_matching_no_reservation_is_404(client, market, pstn, edge, workdir):
    m = market()
    carrier_ip, number = pstn(m.campaign_id)
    ping(client, m.key, caller_number="2025550193")
    call = dial(workdir, edge, number, source_ip=carrier_ip, caller_id=("from", "2025550194"),
                refused_with=404)
    assert call.returncode == 0, call.log


def test_when_no_number_is_free_the_sip_address_still_works(client, market, pstn, sessions):
    m = market()
    _, number = pstn(m.campaign_id)
    holder = ping(client, m.key)
    assert holder["inbound_number"] == number
    none_free = ping(client, m.key)
    assert none_free["inbound_number"] is None and none_free["sip_address"]
    expire(sessions, holder["uuid"])
    assert ping(client, m.key)["inbound_number"] == number


def test_the_keys_static_number_comes_first(client, market, pstn):
    m = market(inbound_number="8005559999")
    pstn(m.campaign_id)
    assert ping(client, m.key)["inbound_number"] == "+18005559999"


def test_an_unmatched_carrier_call_goes_to_the_campaigns_fallback(client, market, buyers, pstn,
                                                                  edge, workdir, sessions):
    fallback = buyers()
    m = market()
    carrier_ip, number = pstn(m.campaign_id)
    with sessions() as db:
        admin.set_fallback(db, m.campaign_id, fallback.uri)
        db.commit()
    call = dial(workdir, edge, number, source_ip=carrier_ip, caller_id=("from", "2025550195"))
    assert call.returncode == 0, call.log
    assert fallback.wait() == 0
    assert "X-RTB-Reservation" not in fallback.received()


def test_racing_pings_never_hold_one_number_twice(app, market, pstn):
    m = market()
    numbers = {pstn(m.campaign_id)[1] for _ in range(3)}
    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(lambda _: ping(app.test_client(), m.key)["inbound_number"], range(12)))
    held = [n for n in got if n is not None]
    assert sorted(held) == sorted(numbers)
