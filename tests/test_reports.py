"""What an operator reads and edits through rtbctl, as the services answer it."""

from __future__ import annotations

import uuid as uuidlib
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select, update

from app import admin, pings, reports
from app.models import PostbackKey, Reservation
from app.reservations import utcnow


def reserve(client, key: str) -> str:
    return client.post("/rtbs.json", query_string={"key": key}).get_json()["rtb"]["uuid"]


def test_a_dialable_reservation_past_its_time_is_listed_as_expired(client, market, sessions):
    m = market()
    late, live = reserve(client, m.key), reserve(client, m.key)
    with sessions() as db:
        db.execute(update(Reservation).where(Reservation.uuid == late)
                   .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
        expired = [r.uuid for r in reports.recent_reservations(db, "expired", m.campaign_id)]
        reserved = [r.uuid for r in reports.recent_reservations(db, "reserved", m.campaign_id)]
        newest = [r.uuid for r in reports.recent_reservations(db, None, m.campaign_id, limit=1)]
    assert (expired, reserved, newest) == ([late], [live], [live])


def test_a_reservation_is_found_by_its_uuid_in_either_case(client, market, sessions):
    made = reserve(client, market().key)
    with sessions() as db:
        assert reports.reservation(db, made.upper()).uuid == made


def test_the_ping_summary_without_a_key_counts_every_keys_pings(client, market, sessions):
    for m in (market(), market()):
        reserve(client, m.key)
    since = utcnow() - timedelta(hours=1)
    with sessions() as db:
        every = sum(r["pings"] for r in pings.summary(db, None, since))
        by_key = sum(r["pings"] for r in pings.summary(
            db, list(db.scalars(select(PostbackKey.id))), since))
    assert every == by_key >= 2


def test_tag_changes_replace_or_drop_one_rule_each_and_keep_the_others(market, sessions):
    m = market()
    with sessions() as db:
        target = admin.add_target(db, m.campaign_id, "sip:b@127.0.0.1:9", Decimal("1"), 1,
                                  tag_changes={"insured": ["yes"], "age": ["65"], "x": []})
        assert target.tag_rules == {"insured": ["yes"], "age": ["65"]}
        admin.edit_target(db, target, tag_changes={"insured": ["no", "n"], "age": []})
        assert target.tag_rules == {"insured": ["no", "n"]}
        admin.edit_target(db, target, tag_changes={"insured": []})
        assert target.tag_rules is None
        db.rollback()


def test_numbers_are_listed_in_order(sessions):
    suffix = int(uuidlib.uuid4().int % 9000) + 1000
    with sessions() as db:
        admin.add_number(db, f"+1202556{suffix}")
        admin.add_number(db, f"+1202555{suffix}")
        listed = [n.number for n in admin.list_numbers(db)]
        db.rollback()
    assert {f"+1202555{suffix}", f"+1202556{suffix}"} <= set(listed)
    assert listed == sorted(listed)
