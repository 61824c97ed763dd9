"""A worker's cache of keys and targets: an edit takes effect on the very next
ping (well within the second the issue allows), and a ping the cache can
answer costs the database one statement."""

from __future__ import annotations

from sqlalchemy import event, text

from app import admin
from app.models import PostbackKey, Target
from tests.market import add_target

CHEAP, DEAR = {"payout": "5"}, {"payout": "20"}


def ping(client, key: str, **params) -> dict:
    return client.post("/rtbs.json", query_string={"key": key, **params}).get_json()


def payout(client, key: str) -> float:
    return ping(client, key)["rtb"]["retreaver_payout"]


def edit(sessions, target_id: int, **settings) -> None:
    with sessions() as db:
        admin.edit_target(db, target_id, **settings)
        db.commit()


def test_a_target_disabled_after_a_ping_takes_no_more(client, market, sessions):
    m = market(targets=[DEAR, CHEAP])
    assert payout(client, m.key) == 20
    with sessions() as db:
        db.get(Target, m.target_ids[0]).enabled = False
        db.commit()
    assert payout(client, m.key) == 5


def test_a_cap_edited_after_a_ping_decides_the_next(client, market, sessions):
    m = market(targets=[DEAR, CHEAP])
    assert payout(client, m.key) == 20
    edit(sessions, m.target_ids[0], hourly_cap=0)
    assert payout(client, m.key) == 5
    edit(sessions, m.target_ids[0], hourly_cap=10)
    assert payout(client, m.key) == 20


def test_a_target_added_after_a_ping_takes_the_next(client, market, sessions):
    m = market(targets=[CHEAP])
    assert payout(client, m.key) == 5
    with sessions() as db:
        add_target(db, m.campaign_id, DEAR)
        db.commit()
    assert payout(client, m.key) == 20


def test_rules_only_the_cache_reads_take_effect_on_the_next_ping(client, market, sessions):
    m = market(targets=[DEAR, CHEAP])
    assert payout(client, m.key) == 20
    edit(sessions, m.target_ids[0], states="TX")
    assert ping(client, m.key, caller_state="CA")["rtb"]["retreaver_payout"] == 5
    edit(sessions, m.target_ids[1], states="TX")
    assert ping(client, m.key, caller_state="CA")["rtb"] == {"status": "rejected", "reason": "geo"}


def test_a_key_deleted_after_a_ping_is_refused(client, market, sessions):
    m = market()
    assert ping(client, m.key)["rtb"]["status"] == "reserved"
    with sessions() as db:
        for table in ("pings", "caller_reservations", "key_rate_windows", "reservations"):
            column = "scope" if table == "caller_reservations" else "key_id"
            value = f"k{m.key_id}" if table == "caller_reservations" else m.key_id
            db.execute(text(f"DELETE FROM {table} WHERE {column} = :v"), {"v": value})
        db.execute(text("DELETE FROM postback_keys WHERE id = :id"), {"id": m.key_id})
        db.commit()
    response = client.post("/rtbs.json", query_string={"key": m.key})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_key"


def test_a_key_edited_after_a_ping_is_read_again(client, market, sessions):
    m = market()
    assert ping(client, m.key)["rtb"]["status"] == "reserved"
    with sessions() as db:
        admin.edit_key(db, db.get(PostbackKey, m.key_id), require_caller_number=True)
        db.commit()
    assert ping(client, m.key)["error"]["code"] == "missing_caller_number"


def test_a_ping_the_cache_can_answer_is_one_statement(app, client, market):
    m = market(targets=[DEAR, CHEAP])
    ping(client, m.key, caller_number="2025550123")
    sent: list[str] = []

    def listener(_conn, _cursor, statement: str, *_rest) -> None:
        sent.append(statement)

    engine = app.extensions["rtb.sessions"].kw["bind"]
    event.listen(engine, "before_cursor_execute", listener)
    try:
        answer = ping(client, m.key, caller_number="2025550199")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert answer["rtb"]["status"] == "reserved"
    assert [s.split("(")[0] for s in sent] == ["CALL rtb_ping"]
