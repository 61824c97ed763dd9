"""Properties of the HTTP API over arbitrary input (hypothesis), on the real
database: no valid key, no reservation; never a 5xx; another key's
reservation looks exactly like one that does not exist."""

from __future__ import annotations

import json
import uuid as uuidlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.models import Ping, Reservation

EXAMPLES = settings(max_examples=80, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
NAMES = st.sampled_from(["key", "caller_number", "status", "state", "zip", "tag"]) | st.text(max_size=20)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=200)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=3), max_leaves=8)
CALLERS = st.sampled_from(["2025550123", "+12025550123", "(202) 555-0123", "", "0", "+44 20 7946 0958"]) \
    | st.text(max_size=30)


def requests(key: st.SearchStrategy) -> st.SearchStrategy:
    """A ping, confirm or read's parameters, sent as a query, a form or a JSON body."""
    fields = st.fixed_dictionaries({"key": key}, optional={"caller_number": CALLERS}).flatmap(
        lambda known: st.dictionaries(NAMES, st.text(max_size=50), max_size=4).map(
            lambda extra: {**extra, **{k: v for k, v in known.items() if v is not None}}))
    return st.one_of(
        fields.map(lambda values: {"query_string": values}),
        fields.map(lambda values: {"data": values}),
        st.tuples(fields, st.dictionaries(NAMES.filter(lambda name: name != "key"), JSON_VALUES,
                                          max_size=3)).map(
            lambda both: {"data": json.dumps({**both[0], **both[1]}),
                          "content_type": "application/json"}),
        st.binary(max_size=300).map(lambda raw: {"data": raw, "content_type": "application/json"}),
    )


def not_the_key(valid: str) -> st.SearchStrategy:
    near = st.sampled_from([valid[:-1], valid + "x", valid.upper(), f" {valid}", valid[::-1],
                            valid.replace(valid[0], "0" if valid[0] != "0" else "1", 1)])
    return (st.none() | st.text(max_size=80) | near).filter(lambda key: key != valid)


def counts(sessions) -> tuple[int, int]:
    with sessions() as db:
        return (db.scalar(select(func.count()).select_from(Reservation)),
                db.scalar(select(func.count()).select_from(Ping)))


def assert_client_error(response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data())
    assert set(response.get_json()["error"]) == {"code", "message"}


def test_no_ping_without_a_valid_key_reserves_or_logs_anything(app, sessions, market):
    valid = market().key
    client = app.test_client()
    before = counts(sessions)

    @given(request=requests(not_the_key(valid)))
    @EXAMPLES
    def refused(request):
        assert_client_error(client.post("/rtbs.json", **request))

    refused()
    assert counts(sessions) == before


def test_any_ping_with_a_valid_key_is_answered_without_a_5xx(app, sessions, market):
    m = market()
    client = app.test_client()

    @given(request=requests(st.just(m.key)))
    @EXAMPLES
    def answered(request):
        response = client.post("/rtbs.json", **request)
        assert response.status_code < 500, response.get_data()
        if response.status_code != 200:
            assert_client_error(response)
            return
        rtb = response.get_json()["rtb"]
        if "uuid" in rtb:
            with sessions() as db:
                owner = db.scalar(select(Reservation.key_id).where(Reservation.uuid == rtb["uuid"]))
            assert owner == m.key_id

    answered()


def test_another_keys_reservation_looks_exactly_like_an_unknown_one(app, market):
    owner, stranger = market(), market()
    same_publisher = market(publisher_id=owner.publisher_id)
    client = app.test_client()
    theirs = client.post("/rtbs.json", query_string={"key": owner.key}).get_json()["rtb"]["uuid"]

    @given(intruder=st.sampled_from([stranger.key, same_publisher.key]),
           method=st.sampled_from(["get", "put", "patch"]),
           unknown=st.uuids().map(str) | st.text(alphabet="0123456789abcdef-", min_size=1, max_size=40))
    @EXAMPLES
    def hidden(intruder, method, unknown):
        send = getattr(client, method)
        values = {"key": intruder, "status": "confirmed"}
        foreign = send(f"/rtbs/{theirs}.json", query_string=values)
        missing = send(f"/rtbs/{unknown}.json", query_string=values)
        assert foreign.status_code == missing.status_code == 404
        assert foreign.get_json() == missing.get_json()

    hidden()
    mine = client.get(f"/rtbs/{theirs}.json", query_string={"key": owner.key})
    assert mine.status_code == 200
    assert mine.get_json()["rtb"]["status"] == "reserved"


def test_arbitrary_confirms_and_reads_never_5xx_nor_touch_anothers_reservation(app, market):
    owner, stranger = market(), market()
    client = app.test_client()
    theirs = client.post("/rtbs.json", query_string={"key": owner.key}).get_json()["rtb"]["uuid"]
    paths = st.sampled_from([theirs, str(uuidlib.uuid4())]) | st.text(max_size=60).map(
        lambda raw: raw.replace("/", "").replace("?", "").replace("#", "") or "x")

    @given(path=paths, method=st.sampled_from(["get", "put", "patch"]),
           request=requests(st.sampled_from([stranger.key, None]) | st.text(max_size=40)))
    @EXAMPLES
    def harmless(path, method, request):
        response = getattr(client, method)(f"/rtbs/{path}.json", **request)
        assert_client_error(response)

    harmless()
    after = client.get(f"/rtbs/{theirs}.json", query_string={"key": owner.key}).get_json()["rtb"]
    assert after["status"] == "reserved"
