"""Every error is JSON {"error": {"code", "message"}} with the right status."""

from __future__ import annotations

import socket

import pytest

from app import create_app
from app.domain_errors import Conflict, Invalid, NotFound, RateLimited, Unauthenticated
from app.settings import Settings
from tests.sip import free_port


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_missing_key_is_401(client):
    assert_error(client.post("/rtbs.json", query_string={"caller_number": "2025550123"}),
                 401, "missing_key")


def test_unknown_key_is_401(client):
    assert_error(client.post("/rtbs.json", query_string={"key": "not-a-key"}), 401, "invalid_key")


@pytest.mark.parametrize("number", ["12", "abc", "+1 000 000 0000", "202555012345678"])
def test_a_caller_number_that_is_not_a_valid_number_is_422(client, market, number):
    m = market()
    assert_error(client.post("/rtbs.json", query_string={"key": m.key, "caller_number": number}),
                 422, "invalid_caller_number")


def test_a_caller_number_that_is_not_a_string_is_422(client, market):
    m = market()
    assert_error(client.post("/rtbs.json", json={"key": m.key, "caller_number": ["2025550123"]}),
                 422, "invalid_parameter")


@pytest.mark.parametrize("body", [b"{bad", b"[1, 2]", b'"key"'])
def test_malformed_json_is_400(client, body):
    assert_error(client.post("/rtbs.json", data=body, content_type="application/json"),
                 400, "malformed_json")


def test_a_body_over_64_kib_is_413(client, market):
    m = market()
    big = {"key": m.key, "blob": "x" * (64 * 1024)}
    assert_error(client.post("/rtbs.json", json=big), 413, "payload_too_large")


def test_a_wrong_method_is_405_with_allow(client):
    response = client.delete("/rtbs.json")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_an_unknown_path_is_404(client):
    assert_error(client.get("/nowhere"), 404, "not_found")


def test_the_unexpected_is_500_without_internals(settings, sessions):
    app = create_app(settings, sessions)

    def explode():
        raise RuntimeError("secret internals: password=hunter2")

    app.add_url_rule("/explode", view_func=explode)
    response = app.test_client().get("/explode")
    assert_error(response, 500, "internal_error")
    assert b"hunter2" not in response.data and b"Traceback" not in response.data


@pytest.mark.parametrize("error, status", [
    (Unauthenticated("invalid_key", "who?"), 401), (NotFound("not_found", "none"), 404),
    (Conflict("name_taken", "taken"), 409), (Invalid("invalid_tag", "too long"), 422),
    (RateLimited("rate_limited", "slow down", retry_after=1), 429),
])
def test_a_services_refusal_answers_with_its_status_and_code(settings, sessions, error, status):
    app = create_app(settings, sessions)

    def refuse():
        raise error

    app.add_url_rule("/refuse", view_func=refuse)
    response = app.test_client().get("/refuse")
    assert_error(response, status, error.code)
    assert response.headers.get("Retry-After") == ("1" if status == 429 else None)


def test_nothing_is_reserved_by_a_refused_ping(client, market, sessions):
    from sqlalchemy import func, select

    from app.models import Reservation
    m = market()
    with sessions() as db:
        before = db.scalar(select(func.count()).select_from(Reservation))
    client.post("/rtbs.json", query_string={"key": m.key, "caller_number": "12"})
    client.post("/rtbs.json", query_string={"key": "wrong", "caller_number": "2025550123"})
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(Reservation)) == before


def test_an_unreachable_database_is_503_json(env):
    closed = free_port(kind=socket.SOCK_STREAM)
    settings = Settings.from_env({**env, "RTB_DATABASE_URL":
                                  f"mysql+pymysql://nobody:x@127.0.0.1:{closed}/rtb"})
    response = create_app(settings).test_client().post("/rtbs.json", query_string={"key": "k"})
    assert_error(response, 503, "database_unavailable")
    assert response.headers["Retry-After"] == "5"
