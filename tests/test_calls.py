"""The life of a call through the real edge: claimed, answered, ended,
converted, or given back when the buyer does not answer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from app.models import Reservation
from tests.rtbctl import run_json
from tests.sip import dial


def reserve(client, key: str) -> str:
    return client.post("/rtbs.json", query_string={"key": key}).get_json()["rtb"]["uuid"]


def shown(client, key: str, uuid: str) -> dict:
    return client.get(f"/rtbs/{uuid}.json", query_string={"key": key}).get_json()["rtb"]


def test_a_call_lasting_its_seconds_converts_and_a_shorter_one_does_not(
        client, market, buyers, edge, workdir):
    b = buyers(calls=2)
    short_enough = market(b.uri, min_seconds=2)
    too_short = market(b.uri, min_seconds=5)
    uuids = [reserve(client, short_enough.key), reserve(client, too_short.key)]
    (workdir / "a").mkdir(), (workdir / "b").mkdir()
    with ThreadPoolExecutor(2) as pool:
        calls = list(pool.map(
            lambda args: dial(workdir / args[0], edge, args[1], source_ip=args[2], hold_ms=3000),
            [("a", uuids[0], short_enough.ip), ("b", uuids[1], too_short.ip)]))
    assert [c.returncode for c in calls] == [0, 0], [c.log for c in calls]

    converted = shown(client, short_enough.key, uuids[0])
    assert converted["status"] == "completed"
    assert converted["call"]["converted"] is True
    assert converted["call"]["payout_earned"] == 12.5
    assert abs(converted["call"]["talk_seconds"] - 3.0) < 1.0
    assert converted["call"]["answered_at"] and converted["call"]["ended_at"]
    assert "sip_address" not in converted

    not_converted = shown(client, too_short.key, uuids[1])
    assert not_converted["call"]["converted"] is False
    assert not_converted["call"]["payout_earned"] == 0.0
    assert abs(not_converted["call"]["talk_seconds"] - 3.0) < 1.0


def test_a_busy_buyer_gives_the_reservation_back_and_a_second_dial_connects(
        client, market, buyers, edge, workdir, sessions):
    busy = buyers(scenario="buyer_busy.xml")
    m = market(busy.uri)
    uuid = reserve(client, m.key)
    refused = dial(workdir, edge, uuid, source_ip=m.ip, refused_with=486)
    assert refused.returncode == 0, refused.log
    assert busy.wait() == 0
    given_back = shown(client, m.key, uuid)
    assert given_back["status"] == "confirmed"
    assert given_back["call"]["final_status"] == 486
    assert given_back["sip_address"]

    answering = buyers(port=busy.port)
    again = dial(workdir, edge, uuid, source_ip=m.ip)
    assert again.returncode == 0, again.log
    assert answering.wait() == 0
    with sessions() as db:
        row = db.scalar(select(Reservation).where(Reservation.uuid == uuid))
        assert [(c.final_status, c.answered_at is not None) for c in row.calls] == [
            (486, False), (200, True)]
        assert row.status == "completed"



def test_the_report_adds_up_pings_reservations_calls_and_payout(client, market, buyers, edge,
                                                                workdir, env):
    b = buyers()
    m = market(b.uri, min_seconds=1, payout="7.5")
    uuid = reserve(client, m.key)
    reserve(client, m.key)
    assert dial(workdir, edge, uuid, source_ip=m.ip, hold_ms=1500).returncode == 0
    report = run_json(env, "report", "--since", "1h", "--by", "campaign")
    row = next(r for r in report if r["campaign"] == m.campaign_id)
    assert {k: row[k] for k in ("pings", "reservations", "calls", "answered", "converted",
                                "payout")} == {"pings": 2, "reservations": 2, "calls": 1,
                                               "answered": 1, "converted": 1, "payout": 7.5}
    assert 1.0 < row["talk_seconds"] < 2.5
