"""POST /rtbs.json and GET /rtbs/<uuid>.json against the real database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from app.credentials import key_hash
from app.models import Reservation, Target
from tests.conftest import SIP_DOMAIN
from tests.market import expire

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RESERVED_FIELDS = ["uuid", "status", "retreaver_payout", "retreaver_seconds", "inbound_number",
                   "sip_address", "expires_at"]


def ping(client, **params):
    return client.post("/rtbs.json", query_string=params)


def assert_reservation_shape(body: dict, ttl: int = 60) -> dict:
    rtb = body["rtb"]
    assert list(rtb)[:len(RESERVED_FIELDS)] == RESERVED_FIELDS
    assert UUID4.match(rtb["uuid"])
    assert rtb["status"] == "reserved"
    assert rtb["sip_address"] == f"{rtb['uuid']}@{SIP_DOMAIN}"
    expires = datetime.strptime(rtb["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(seconds=ttl))) < timedelta(seconds=3)
    return rtb


def test_ping_with_caller_number_reserves_with_the_exact_shape(client, market):
    m = market(payout="12.5", min_seconds=60, inbound_number="+1 800 555 1234")
    response = ping(client, key=m.key, caller_number="(202) 555-0123")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    rtb = assert_reservation_shape(response.get_json())
    assert rtb["retreaver_payout"] == 12.5
    assert rtb["retreaver_seconds"] == 60
    assert rtb["inbound_number"] == "+18005551234"
    assert rtb["caller_number"] == "+12025550123"


def test_ping_without_caller_number_still_gets_a_sip_address(client, market):
    m = market(ttl=90)
    response = ping(client, key=m.key)
    assert response.status_code == 200
    rtb = assert_reservation_shape(response.get_json(), ttl=90)
    assert rtb["inbound_number"] is None
    assert rtb["caller_number"] is None


def test_every_reservation_has_its_own_sip_address(client, market):
    m = market()
    addresses = {ping(client, key=m.key).get_json()["rtb"]["sip_address"] for _ in range(5)}
    assert len(addresses) == 5


def test_parameters_come_from_query_form_or_json_and_the_rest_become_tags(client, market, sessions):
    m = market()
    by_query = ping(client, key=m.key, caller_number="2025550123", caller_zip="90210")
    by_form = client.post("/rtbs.json", data={"key": m.key, "caller_zip": "10001"})
    by_json = client.post("/rtbs.json", json={"key": m.key, "caller_number": "+12025550199",
                                              "age": 42, "caller_zip": "60601"})
    uuids = [r.get_json()["rtb"]["uuid"] for r in (by_query, by_form, by_json)]
    with sessions() as db:
        rows = {r.uuid: r for r in db.scalars(select(Reservation).where(Reservation.uuid.in_(uuids)))}
    assert rows[uuids[0]].tags == {"caller_zip": "90210"}
    assert rows[uuids[1]].tags == {"caller_zip": "10001"}
    assert rows[uuids[2]].tags == {"age": 42, "caller_zip": "60601"}
    assert rows[uuids[2]].caller_number == "+12025550199"


def test_a_campaign_without_an_enabled_target_rejects_without_a_sip_address(client, market, sessions):
    m = market()
    with sessions() as db:
        db.get(Target, m.target_id).enabled = False
        db.commit()
    response = ping(client, key=m.key, caller_number="2025550123")
    assert response.status_code == 200
    assert response.get_json() == {"rtb": {"status": "rejected", "reason": "no_target"}}


def test_a_reservation_reads_back_with_its_key(client, market):
    m = market()
    made = ping(client, key=m.key).get_json()["rtb"]
    response = client.get(f"/rtbs/{made['uuid']}.json", query_string={"key": m.key})
    assert response.status_code == 200
    assert response.get_json()["rtb"]["status"] == "reserved"
    assert response.get_json()["rtb"]["sip_address"] == made["sip_address"]
    assert response.get_json()["rtb"]["expires_at"] == made["expires_at"]


def test_another_keys_reservation_looks_the_same_as_none(client, market):
    mine, theirs = market(), market()
    made = ping(client, key=theirs.key).get_json()["rtb"]
    foreign = client.get(f"/rtbs/{made['uuid']}.json", query_string={"key": mine.key})
    unknown = client.get("/rtbs/00000000-0000-4000-8000-000000000000.json",
                         query_string={"key": mine.key})
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.get_json() == unknown.get_json()
    assert foreign.get_json()["error"]["code"] == "reservation_not_found"


def test_an_expired_reservation_reads_back_expired_without_a_sip_address(client, market, sessions):
    m = market()
    made = ping(client, key=m.key).get_json()["rtb"]
    expire(sessions, made["uuid"])
    rtb = client.get(f"/rtbs/{made['uuid']}.json", query_string={"key": m.key}).get_json()["rtb"]
    assert rtb["status"] == "expired"
    assert "sip_address" not in rtb


def test_the_postback_key_is_stored_only_as_its_hash(client, market, sessions):
    m = market()
    ping(client, key=m.key)
    with sessions() as db:
        stored = str(db.execute(text("SELECT * FROM postback_keys")).all())
        stored += str(db.execute(text("SELECT tags FROM reservations")).all())
    assert m.key not in stored
    assert key_hash(m.key) in stored


def test_fifty_tags_of_the_longest_names_and_values_are_kept(client, market, sessions):
    m = market()
    tags = {f"{n:02d}" + "n" * 62: "v" * 256 for n in range(49)}
    response = client.post("/rtbs.json", json={"key": m.key, "flag": True, **tags})
    assert response.status_code == 200, response.get_json()
    with sessions() as db:
        kept = db.scalar(select(Reservation.tags).where(
            Reservation.uuid == response.get_json()["rtb"]["uuid"]))
    assert kept == {"flag": True, **tags}


@pytest.mark.parametrize("tags", [
    {f"t{n}": "x" for n in range(51)},
    {"n" * 65: "x"},
    {"long": "v" * 257},
    {"nested": {"a": 1}},
    {"listed": ["a", "b"]},
], ids=["51 tags", "65-char name", "257-char value", "object value", "list value"])
def test_tags_beyond_the_limits_are_422_invalid_tag_and_reserve_nothing(client, market, sessions,
                                                                        tags):
    m = market()
    response = client.post("/rtbs.json", json={"key": m.key, **tags})
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_tag"
    with sessions() as db:
        assert db.scalar(select(func.count()).where(Reservation.key_id == m.key_id)) == 0
