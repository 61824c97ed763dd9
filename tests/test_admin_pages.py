"""/admin over Flask's test client: who gets in, what a form needs, how
failures are throttled, and that the pages' queries read the ping log
through its indexes. tests/test_admin_browser.py drives the pages in Chromium."""

from __future__ import annotations

import stat
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from app import logins
from app.console import queries
from app.models import Reservation
from app.reservations import utcnow
from tests.admin_pages import PASSWORD, csrf_token, new_operator
from tests.market import next_loopback

PAGES = ["/admin/", "/admin/log", "/admin/targets"]


@pytest.fixture
def operator(sessions) -> str:
    return new_operator(sessions)


def log_in(client, name: str, password: str = PASSWORD, address: str | None = None, **form):
    address = address or next_loopback()
    fields = {"name": name, "password": password, "csrf_token": csrf_token(client), **form}
    return client.post("/admin/login", data=fields, environ_base={"REMOTE_ADDR": address})


@pytest.mark.parametrize("page", PAGES)
def test_pages_send_a_stranger_to_the_login_page(client, page):
    answer = client.get(page)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/admin/login")


def test_the_right_password_opens_every_page(client, operator):
    answer = log_in(client, operator)
    assert answer.status_code == 302
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/admin" in cookie
    for page in PAGES:
        answer = client.get(page)
        assert answer.status_code == 200, page
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["Cache-Control"] == "no-store"
    missing = client.get("/admin/reservations/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and "no reservation" in missing.get_data(as_text=True)


def test_a_wrong_password_opens_nothing(client, operator):
    answer = log_in(client, operator, password="not the password")
    assert answer.status_code == 401
    assert "do not match" in answer.get_data(as_text=True)
    assert client.get("/admin/log").status_code == 302


def test_a_login_without_its_csrf_token_is_refused(client, operator):
    answer = client.post("/admin/login", data={"name": operator, "password": PASSWORD})
    assert answer.status_code == 400
    assert client.get("/admin/log").status_code == 302


def test_logging_out_needs_the_csrf_token_and_ends_the_session(client, operator):
    log_in(client, operator)
    assert client.post("/admin/logout").status_code == 400
    assert client.get("/admin/log").status_code == 200
    client.post("/admin/logout", data={"csrf_token": csrf_token(client)})
    assert client.get("/admin/log").status_code == 302


def test_a_publishers_key_opens_nothing_here(client, market, operator):
    m = market()
    for answer in (client.get("/admin/log", headers={"Authorization": f"Bearer {m.key}"}),
                   client.get("/admin/log", query_string={"key": m.key, "api_key": m.key})):
        assert answer.status_code == 302
    assert log_in(client, str(m.key_id), password=m.key).status_code == 401


def test_failed_logins_are_throttled_per_operator_even_with_the_right_password(client, operator):
    for _ in range(logins.LIMITS["n"]):
        assert log_in(client, operator, password="wrong password!").status_code == 401
    answer = log_in(client, operator)
    assert answer.status_code == 429 and answer.headers["Retry-After"]
    assert client.get("/admin/log").status_code == 302


def test_failed_logins_are_throttled_per_source_address(client, operator):
    address = next_loopback()
    for n in range(logins.LIMITS["a"]):
        assert log_in(client, f"nobody-{n}", address=address).status_code == 401
    assert log_in(client, operator, address=address).status_code == 429
    assert log_in(client, operator).status_code == 302


def test_a_right_password_takes_back_the_operators_failures(client, operator):
    for _ in range(logins.LIMITS["n"] - 1):
        log_in(client, operator, password="wrong password!")
    assert log_in(client, operator).status_code == 302
    for _ in range(logins.LIMITS["n"] - 1):
        log_in(client, operator, password="wrong password!")
    assert log_in(client, operator).status_code == 302


def test_after_login_the_operator_lands_on_the_page_asked_for_and_never_elsewhere(
        client, operator):
    assert log_in(client, operator, next="/admin/targets").headers["Location"] == "/admin/targets"
    assert log_in(client, operator, next="https://evil.test/").headers["Location"] == "/admin/"


def test_the_session_key_is_made_once_readable_by_its_owner_alone(app, settings):
    mode = settings.admin_secret_file.stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert app.config["SECRET_KEY"] == settings.admin_secret_file.read_bytes()


def test_the_log_page_shows_a_ping_and_filters_by_key_publisher_outcome_reason_and_time(client, market, operator):
    m = market(targets=[{"states": "CA"}])
    client.post("/rtbs.json", query_string={"key": m.key, "caller_zip": "10001"})
    log_in(client, operator)
    page = client.get("/admin/log", query_string={"campaign": m.campaign_id}).get_data(as_text=True)
    assert page.count('class="ping"') == 1 and ">geo<" in page
    reserved = client.get("/admin/log", query_string={"campaign": m.campaign_id,
                                                      "outcome": "reserved"})
    assert 'class="ping"' not in reserved.get_data(as_text=True)
    for matching in ({"key": m.key_id}, {"publisher": m.publisher_id, "reason": "geo"},
                     {"campaign": m.campaign_id, "start": "2026-01-01T00:00",
                      "end": "2099-01-01T00:00"}):
        page = client.get("/admin/log", query_string=matching).get_data(as_text=True)
        assert page.count('class="ping"') == 1, matching
    later = client.get("/admin/log", query_string={"key": m.key_id, "start": "2099-01-01T00:00"})
    assert 'class="ping"' not in later.get_data(as_text=True)
    bad = client.get("/admin/log", query_string={"key": "x"}).get_data(as_text=True)
    assert "key must be a whole number" in bad


def plan(db, query) -> list[dict]:
    compiled = query.compile(db.get_bind(), compile_kwargs={"literal_binds": True})
    return [dict(row) for row in db.execute(text(f"EXPLAIN {compiled}")).mappings()]


def test_the_dashboard_reads_pings_and_calls_through_indexes_on_time(sessions):
    """On a year of history the last hour and day are a sliver of the rows; here
    the suite's own rows are all that young, so the windows start past them."""
    later = utcnow() + timedelta(hours=2)
    with sessions() as db:
        for query, table, index in ((queries.pings_query(later), "pings", "pings_time_idx"),
                                    (queries.calls_query(later), "calls", "calls_claimed_idx")):
            found = plan(db, query)
            assert found[0]["table"] == table, found
            assert found[0]["key"] == index and found[0]["type"] == "range", found
            assert all(r["type"] != "ALL" for r in found), found


def test_a_reservations_ping_is_read_from_a_minute_of_an_index_on_time(client, market, sessions):
    m = market()
    uuid = client.post("/rtbs.json", query_string={"key": m.key}).get_json()["rtb"]["uuid"]
    with sessions() as db:
        made = db.scalar(select(Reservation).where(Reservation.uuid == uuid))
        assert db.scalar(queries.making_ping_query(made)).outcome == "reserved"
        [row] = plan(db, queries.making_ping_query(made))
    # Either bounds the read to the minute after the reservation was made.
    assert row["key"] in ("pings_key_time_idx", "pings_time_idx") and row["type"] == "range", row
