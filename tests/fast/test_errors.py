"""Every error is JSON {"error": {"code", "message"}} with the right status:
the errors a request meets before the database, on the app's database double."""

from __future__ import annotations

import pytest

from app import create_app
from app.domain_errors import Conflict, Invalid, NotFound, RateLimited, Unauthenticated
from tests.shapes import assert_error


def test_missing_key_is_401(client):
    assert_error(client.post("/rtbs.json", query_string={"caller_number": "2025550123"}),
                 401, "missing_key")


@pytest.mark.parametrize("body", [b"{bad", b"[1, 2]", b'"key"'])
def test_malformed_json_is_400(client, body):
    assert_error(client.post("/rtbs.json", data=body, content_type="application/json"),
                 400, "malformed_json")


def test_a_body_over_64_kib_is_413(client):
    big = {"key": "any-key", "blob": "x" * (64 * 1024)}
    assert_error(client.post("/rtbs.json", json=big), 413, "payload_too_large")


def test_a_wrong_method_is_405_with_allow(client):
    response = client.delete("/rtbs.json")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_an_unknown_path_is_404(client):
    assert_error(client.get("/nowhere"), 404, "not_found")


@pytest.fixture(scope="module")
def unreachable(settings):
    """An app with its own sessions on settings' database URL, where nothing
    listens, and a route that fails unexpectedly."""
    app = create_app(settings)

    def explode():
        raise RuntimeError("secret internals: password=hunter2")

    app.add_url_rule("/explode", view_func=explode)
    return app.test_client()


def test_the_unexpected_is_500_without_internals(unreachable):
    response = unreachable.get("/explode")
    assert_error(response, 500, "internal_error")
    assert b"hunter2" not in response.data and b"Traceback" not in response.data


def test_an_unreachable_database_is_503_json(unreachable):
    response = unreachable.post("/rtbs.json", query_string={"key": "k"})
    assert_error(response, 503, "database_unavailable")
    assert response.headers["Retry-After"] == "5"


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
