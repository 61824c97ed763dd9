"""GET /api/v1/rtb_inbounds.json: the owner's log, for operators' API tokens
alone; filters as the hosted services name them; keyset pages of 100 joined
by Link headers, on indexes."""

from __future__ import annotations

import uuid as uuidlib
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from app import inbounds, operators
from app.reservations import utcnow
from tests.market import make_market
from tests.procedures import call_event, claim

LOG = "/api/v1/rtb_inbounds.json"


@pytest.fixture(scope="module")
def token(sessions) -> str:
    with sessions() as db:
        name = f"log-{uuidlib.uuid4().hex[:8]}"
        operators.add(db, name, "a long enough password")
        issued = operators.issue_token(db, name)
        db.commit()
    return issued


def log(client, token: str, **query):
    return client.get(LOG, query_string=query, headers={"Authorization": f"Bearer {token}"})


def rows(client, token: str, **query) -> list[dict]:
    answer = log(client, token, **query)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["rtb_inbounds"]


def ping(client, key: str, **params) -> dict:
    return client.post("/rtbs.json", query_string={"key": key, **params}).get_json()["rtb"]


@pytest.mark.parametrize("headers, query", [
    ({}, {}),
    ({"Authorization": "Bearer not-a-token"}, {}),
    ({}, {"api_key": "not-a-token"}),
    ({"Authorization": "Basic b3BzOnBhc3N3b3Jk"}, {}),
])
def test_without_an_operator_token_the_log_answers_401_in_the_one_error_shape(
        client, headers, query):
    answer = client.get(LOG, headers=headers, query_string=query)
    assert answer.status_code == 401
    assert set(answer.get_json()["error"]) == {"code", "message"}
    assert answer.get_json()["error"]["code"] in ("missing_token", "invalid_token")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_publishers_key_opens_nothing_here(client, market):
    m = market()
    for answer in (client.get(LOG, headers={"Authorization": f"Bearer {m.key}"}),
                   client.get(LOG, query_string={"api_key": m.key}),
                   client.get(LOG, query_string={"key": m.key})):
        assert answer.status_code == 401, answer.get_json()


def test_a_bearer_token_and_api_key_open_the_same_log(client, market, token):
    m = market()
    ping(client, m.key)
    by_header = rows(client, token, **{"campaign_id[]": m.campaign_id})
    by_query = client.get(LOG, query_string={"api_key": token, "campaign_id[]": m.campaign_id})
    assert by_query.status_code == 200
    assert by_query.get_json()["rtb_inbounds"] == by_header and len(by_header) == 1


def test_a_reservation_and_its_call_show_in_its_ping_row(client, market, sessions, token):
    m = market(payout="17.25")
    rtb = ping(client, m.key, caller_number="+12025550123", caller_zip="10001")
    with sessions() as db:
        claimed = claim(db, rtb["uuid"], m.publisher_id, f"log-{rtb['uuid']}")
        call_event(db, claimed, "answered", 200, utcnow().timestamp() - 90)
        call_event(db, claimed, "ended", at=utcnow().timestamp())
        db.commit()
    [row] = rows(client, token, **{"campaign_id[]": m.campaign_id})
    assert row["uuid"] == rtb["uuid"] and row["outcome"] == "reserved"
    assert (row["status"], row["target_id"], row["payout"]) == ("completed", m.target_id, 17.25)
    assert (row["caller_number"], row["caller_state"], row["caller_zip"]) == \
        ("+12025550123", "NY", "10001")
    assert (row["publisher_id"], row["campaign_id"]) == (m.publisher_id, m.campaign_id)
    assert row["call_id"] == claimed.call and 89 <= row["talk_seconds"] <= 91
    assert row["confirmed_at"] is not None and row["created_at"].endswith("Z")


def test_a_rejected_ping_shows_its_reason_and_no_reservation(client, market, token):
    m = market(targets=[{"states": "CA"}])
    assert ping(client, m.key, caller_zip="10001")["status"] == "rejected"
    [row] = rows(client, token, **{"campaign_id[]": m.campaign_id})
    assert (row["status"], row["outcome"], row["reason"], row["uuid"]) == \
        ("rejected", "rejected", "geo", None)


def test_filters_pick_campaigns_publishers_targets_and_statuses(client, market, token):
    first, second = market(), market()
    third = market(publisher_id=first.publisher_id, targets=[{"states": "CA"}])
    reserved = ping(client, first.key)["uuid"]
    ping(client, second.key)
    ping(client, third.key, caller_zip="10001")
    campaigns = {"campaign_id[]": [first.campaign_id, second.campaign_id, third.campaign_id]}
    assert len(rows(client, token, **campaigns)) == 3
    by_publisher = rows(client, token, **{"publisher_id[]": first.publisher_id})
    assert {r["campaign_id"] for r in by_publisher} == {first.campaign_id, third.campaign_id}
    by_target = rows(client, token, **{"target_id[]": first.target_id})
    assert [r["uuid"] for r in by_target] == [reserved]
    rejected = rows(client, token, **campaigns, **{"status[]": "rejected"})
    assert [r["campaign_id"] for r in rejected] == [third.campaign_id]
    both = rows(client, token, **campaigns, **{"status[]": ["rejected", "reserved"]})
    assert len(both) == 3


def test_created_at_bounds_pick_a_time_range(client, market, sessions, token):
    m = market()
    for _ in range(3):
        ping(client, m.key)
    # Days ago, not months: retention rolls up what is older than RTB_RETENTION_DAYS.
    start = (utcnow() - timedelta(days=3)).replace(hour=12, minute=0, second=0)
    with sessions() as db:
        ids = db.scalars(text("SELECT id FROM pings WHERE key_id = :k ORDER BY id"),
                         {"k": m.key_id}).all()
        for n, ping_id in enumerate(ids):
            db.execute(text("UPDATE pings SET created_at = :at WHERE id = :id"),
                       {"at": start + timedelta(hours=n), "id": ping_id})
        db.commit()
    window = rows(client, token, **{"campaign_id[]": m.campaign_id},
                  created_at_start=f"{start + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}Z",
                  created_at_end=f"{start + timedelta(hours=2):%Y-%m-%dT%H:%M:%S}Z")
    assert [r["id"] for r in window] == [ids[1]]
    # Another zone's time is the same moment in UTC.
    later = rows(client, token, **{"campaign_id[]": m.campaign_id},
                 created_at_start=f"{start - timedelta(hours=4):%Y-%m-%dT%H:%M:%S}-05:00")
    assert [r["id"] for r in later] == [ids[2], ids[1]]


def test_pages_of_100_follow_the_link_header_newest_first(client, market, sessions, token):
    m = market()
    # 205 log rows, several to a millisecond: ties are broken by id.
    first = utcnow() - timedelta(days=2)
    with sessions() as db:
        for n in range(205):
            db.execute(text("INSERT INTO pings (key_id, created_at, outcome, reason, duration_ms)"
                            " VALUES (:k, :at, 'rejected', 'no_target', 1)"),
                       {"k": m.key_id, "at": first + timedelta(milliseconds=n // 4)})
        db.commit()
    seen, sizes, url = [], [], f"{LOG}?campaign_id[]={m.campaign_id}"
    while url:
        answer = client.get(url, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.get_json()
        page = answer.get_json()["rtb_inbounds"]
        sizes.append(len(page))
        seen += [(r["created_at"], r["id"]) for r in page]
        link = answer.headers.get("Link")
        url = None
        if link:
            assert link.endswith('>; rel="next"') and "api_key" not in link
            parts = urlsplit(link[1:link.index(">")])
            url = f"{parts.path}?{parts.query}"
    assert sizes == [100, 100, 5]
    assert len({row_id for _, row_id in seen}) == 205
    assert [row_id for _, row_id in seen] == sorted((row_id for _, row_id in seen), reverse=True)


def test_a_cursor_naming_no_ping_is_refused(client, token):
    answer = log(client, token, before=10**15)
    assert answer.status_code == 404
    assert answer.get_json()["error"]["code"] == "cursor_not_found"


@pytest.mark.parametrize("query", [
    {"campaign_id[]": "one"}, {"status[]": "lost"}, {"created_at_start": "yesterday"},
    {"before": "-1"}])
def test_a_malformed_filter_is_refused_with_422(client, token, query):
    answer = log(client, token, **query)
    assert answer.status_code == 422
    assert answer.get_json()["error"]["code"] == "invalid_parameter"


# Filters, the keys they come to, and whether a page may be sorted (the
# rows of a few keys) rather than read in order from pings_time_idx.
EXPLAINED = [
    (inbounds.Filters(), None, False),
    (inbounds.Filters(start=datetime(2026, 1, 1), end=datetime(2026, 1, 8)), None, False),
    (inbounds.Filters(statuses=["rejected"], target_ids=[1]), None, False),
    (inbounds.Filters(campaign_ids=[1, 2]), [1, 2], True),
    (inbounds.Filters(outcomes=["rejected"], reasons=["geo"]), None, False),
    (inbounds.Filters(key_ids=[1]), [1], True),
]


@pytest.fixture(scope="module")
def busy_log(sessions):
    """50,000 pings over the last 30 days, for MariaDB to plan as it would on a
    busy instance: on a small table a full scan is its cheapest plan."""
    m = make_market(sessions)
    with sessions() as db:
        db.execute(text("INSERT INTO pings (key_id, created_at, outcome, reason, duration_ms)"
                        " SELECT :k, NOW(3) - INTERVAL seq * 50 SECOND, 'rejected', 'no_target', 1"
                        " FROM seq_1_to_50000"), {"k": m.key_id})
        db.commit()
        db.execute(text("ANALYZE TABLE pings"))


@pytest.mark.parametrize("filters, key_ids, sorted_", EXPLAINED)
def test_every_table_of_a_log_page_is_read_through_an_index(sessions, busy_log, filters,
                                                            key_ids, sorted_):
    """Whatever the filters, MariaDB's plan reads none of the tables that grow with
    traffic whole (type ALL), and sorts no more than the pings of a few keys."""
    with sessions() as db:
        query = inbounds.query(filters, key_ids)
        compiled = query.compile(db.get_bind(), compile_kwargs={"literal_binds": True})
        plan = db.execute(text(f"EXPLAIN {compiled}")).mappings().all()
    assert plan[0]["table"] == "pings"
    assert {row["table"] for row in plan} >= {"pings", "reservations", "calls"}
    assert all(row["type"] != "ALL" and row["key"] for row in plan), plan
    assert sorted_ or "filesort" not in plan[0]["Extra"], plan
