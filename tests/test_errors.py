"""Every error is JSON {"error": {"code", "message"}} with the right status: the
errors that need the real database to tell (tests/fast has the others)."""

from __future__ import annotations

import pytest

from tests.shapes import assert_error


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
