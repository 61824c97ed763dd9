"""Conversion postbacks: a call's end is queued with it, in the database, and
the worker posts it, signed, to a real receiver on loopback, retrying while
the receiver is away, giving up after its deadline, never twice at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from app.postbacks import queue
from app.settings import Settings
from app.stack.postbacks import PostbackWorker
from tests.polling import eventually
from tests.postback_receiver import Receiver
from tests.procedures import call_event, claim
from tests.rtbctl import run, run_json
from tests.sip import dial

TEMPLATE = ("/cv?u={uuid}&s={status}&p={payout}&t={talk_seconds}&c={converted}"
            "&n={caller_number}&sub={tag:sub_id}")


@pytest.fixture
def receivers():
    started = []

    def make(**options) -> Receiver:
        started.append(Receiver(**options))
        return started[-1]

    yield make
    for receiver in started:
        receiver.stop()


@pytest.fixture
def worker_env(env) -> dict[str, str]:
    """The suite's settings with retries a second apart, for the workers tests start."""
    return {**os.environ, **env, "RTB_POSTBACK_RETRY_SECONDS": "1", "RTB_POSTBACK_TIMEOUT": "2"}


@pytest.fixture
def postback_worker(worker_env, kamailio):
    """Start the postback worker as `make run` does, with these RTB_* over worker_env."""
    started = []

    def start(**overrides: str) -> PostbackWorker:
        worker_env.update(overrides)
        worker = PostbackWorker(Settings.from_env(worker_env))
        worker.service.env = dict(worker_env)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def keyed(env, market, url: str, **key_options) -> tuple:
    """A market whose key posts to url; (market, key, secret) as rtbctl printed them."""
    m = market()
    made = run_json(env, "key", "add", str(m.campaign_id), str(m.publisher_id),
                    "--postback-url", url, *key_options.get("argv", ()))
    return m, made["key"], made["postback_secret"]


def end_call(client, sessions, m, key: str, *, talk: float | None = 73.412, caller="2025550123",
             **tags) -> str:
    """A reservation on key whose call is claimed and answered talk seconds
    before it ends now (talk None: it fails with 486), as the edge records it."""
    rtb = client.post("/rtbs.json", query_string={"key": key, "caller_number": caller,
                                                  **tags}).get_json()["rtb"]
    with sessions() as db:
        claimed = claim(db, rtb["uuid"], m.publisher_id, f"postback-{rtb['uuid']}")
        assert claimed.result == "claimed"
        now = time.time()
        if talk is None:
            call_event(db, claimed, "failed", 486, at=now)
        else:
            call_event(db, claimed, "answered", at=now - talk)
            call_event(db, claimed, "ended", at=now)
    return rtb["uuid"]


def postbacks_of(sessions, uuid: str) -> list:
    with sessions() as db:
        return db.execute(text(
            "SELECT p.* FROM postbacks p JOIN calls c ON c.id = p.call_row_id"
            " JOIN reservations r ON r.id = c.reservation_id WHERE r.uuid = :u"), {"u": uuid}).all()


def state_of(sessions, uuid: str) -> str | None:
    rows = postbacks_of(sessions, uuid)
    return rows[0].state if rows else None


def test_a_call_end_is_posted_once_with_its_fields_signed_with_the_keys_secret(
        env, client, sessions, market, receivers, postback_worker):
    receiver = receivers().start()
    m, key, first_secret = keyed(env, market, receiver.url + TEMPLATE)
    # Rotating the secret prints the new one once; postbacks are signed with it.
    rotated = run_json(env, "key", "edit", key[:8], "--new-postback-secret")
    secret = rotated["postback_secret"]
    assert secret != first_secret and len(secret) == 64
    assert rotated["postback_url"] == receiver.url + TEMPLATE
    converted = end_call(client, sessions, m, key, sub_id="a&b c")
    failed = end_call(client, sessions, m, key, talk=None, caller="2025550124")

    postback_worker()
    assert eventually(lambda: state_of(sessions, converted) == state_of(sessions, failed)
                      == "delivered", 20)
    [got] = receiver.of(converted)
    assert got.method == "POST" and got.signed_with(secret) and not got.signed_with(first_secret)
    assert got.headers["Content-Type"] == "application/json"
    body = got.fields
    assert body == {"id": body["id"], "uuid": converted, "status": "completed", "payout": 12.5,
                    "talk_seconds": 73.412, "converted": True, "caller_number": "+12025550123",
                    "tags": {"sub_id": "a&b c"}}
    assert got.headers["X-RTB-Postback-Id"] == str(body["id"])
    assert got.query == {"u": converted, "s": "completed", "p": "12.50", "t": "73.412",
                         "c": "true", "n": "+12025550123", "sub": "a&b c"}
    [busy] = receiver.of(failed)
    assert busy.signed_with(secret)
    assert (busy.fields["status"], busy.fields["converted"], busy.fields["payout"],
            busy.fields["talk_seconds"]) == ("failed", False, 0.0, None)


def test_a_postback_is_retried_while_its_receiver_is_down_or_failing(
        env, client, sessions, market, receivers, postback_worker):
    receiver = receivers(answers=[(503, {})])
    m, key, secret = keyed(env, market, receiver.url + "/cv?u={uuid}")
    uuid = end_call(client, sessions, m, key)
    postback_worker()
    assert eventually(lambda: postbacks_of(sessions, uuid)[0].attempts >= 2, 20)
    [waiting] = postbacks_of(sessions, uuid)
    assert waiting.state == "pending" and "Connect" in waiting.last_error
    listed = run_json(env, "postbacks")
    assert [row["uuid"] for row in listed if row["uuid"] == uuid] == [uuid]

    receiver.start()
    assert eventually(lambda: state_of(sessions, uuid) == "delivered", 20)
    # The receiver's 503 was retried too: the request after it was taken.
    assert len(receiver.of(uuid)) == 2
    assert all(r.signed_with(secret) for r in receiver.of(uuid))
    assert uuid not in [row["uuid"] for row in run_json(env, "postbacks")]


def test_a_redirect_is_not_followed_and_a_postback_is_given_up_after_its_deadline(
        env, client, sessions, market, receivers, postback_worker):
    elsewhere = receivers().start()
    receiver = receivers(answers=[(302, {"Location": elsewhere.url + "/stolen"})] * 10).start()
    m, key, _ = keyed(env, market, receiver.url + "/cv?u={uuid}")
    postback_worker(RTB_POSTBACK_GIVE_UP_SECONDS="4")
    uuid = end_call(client, sessions, m, key)
    assert eventually(lambda: state_of(sessions, uuid) == "failed", 20)
    [given_up] = postbacks_of(sessions, uuid)
    assert given_up.last_error == "HTTP 302"
    assert len(receiver.of(uuid)) == given_up.attempts
    assert elsewhere.received == []
    failed = [row for row in run_json(env, "postbacks", "--failed") if row["uuid"] == uuid]
    assert [(row["state"], row["last_error"]) for row in failed] == [("failed", "HTTP 302")]


def test_a_receiver_slower_than_the_timeout_is_cut_off_and_retried(
        env, client, sessions, market, receivers, postback_worker):
    receiver = receivers(delay=4).start()
    m, key, _ = keyed(env, market, receiver.url + "/cv?u={uuid}")
    uuid = end_call(client, sessions, m, key)
    postback_worker(RTB_POSTBACK_TIMEOUT="1")
    assert eventually(lambda: (postbacks_of(sessions, uuid)[0].last_error or "") == "timed out", 20)
    assert postbacks_of(sessions, uuid)[0].state == "pending"


def test_a_slow_receiver_holds_up_its_own_postbacks_only(
        env, client, sessions, market, receivers, postback_worker):
    slow, quick = receivers(delay=20).start(), receivers().start()
    slow_market, slow_key, _ = keyed(env, market, slow.url + "/cv?u={uuid}")
    quick_market, quick_key, _ = keyed(env, market, quick.url + "/cv?u={uuid}")
    postback_worker(RTB_POSTBACK_TIMEOUT="30")
    held = end_call(client, sessions, slow_market, slow_key)
    assert eventually(lambda: len(slow.of(held)) == 1, 20)
    passed = end_call(client, sessions, quick_market, quick_key)
    assert eventually(lambda: state_of(sessions, passed) == "delivered", 15)
    [in_flight] = postbacks_of(sessions, held)
    assert (in_flight.state, in_flight.last_error) == ("pending", None)


def test_a_postback_claimed_by_a_worker_that_died_is_delivered_when_its_claim_runs_out(
        env, client, sessions, market, receivers, postback_worker):
    receiver = receivers().start()
    m, key, secret = keyed(env, market, receiver.url + "/cv?u={uuid}")
    uuid = end_call(client, sessions, m, key)
    [row] = postbacks_of(sessions, uuid)
    with sessions() as db:
        # A worker claims every postback due (this one too) for 3 s, then dies.
        [dead] = [due for due in queue.claim(db, 10000, 3) if due.id == row.id]
    postback_worker()
    assert eventually(lambda: state_of(sessions, uuid) == "delivered", 20)
    assert [r.signed_with(secret) for r in receiver.of(uuid)] == [True]
    # The dead worker's outcome, were it to come late, changes nothing.
    with sessions() as db:
        queue.failed(db, dead, "late", 1, 86400, final=True)
    assert state_of(sessions, uuid) == "delivered"


def test_two_workers_never_deliver_one_postback_twice(
        env, client, sessions, market, receivers, postback_worker, worker_env):
    receiver = receivers(delay=0.05).start()
    m, key, secret = keyed(env, market, receiver.url + "/cv?u={uuid}")
    uuids = [end_call(client, sessions, m, key, caller=f"20255501{n:02}") for n in range(30)]
    second = subprocess.Popen([sys.executable, "-m", "app.postbacks"], env=worker_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        postback_worker()
        assert eventually(lambda: all(state_of(sessions, u) == "delivered" for u in uuids), 30)
    finally:
        second.terminate()
        second.wait(15)
    ours = [r for r in receiver.received if r.fields["uuid"] in uuids]
    assert sorted(r.fields["uuid"] for r in ours) == sorted(uuids)
    assert all(r.signed_with(secret) for r in ours)


def test_workers_claiming_at_once_never_take_the_same_postback(sessions, market):
    m = market()
    # Rows of calls no test makes (ids far past any real one); due at once.
    ours = set()
    with sessions() as db:
        for n in range(40):
            ours.add(db.execute(text(
                "INSERT INTO postbacks (call_row_id, key_id) VALUES (:c, :k) RETURNING id"),
                {"c": 2**61 + 100 * m.key_id + n, "k": m.key_id}).scalar_one())
        db.commit()

    def claim_some(_) -> list[int]:
        with sessions() as db:
            return [due.id for due in queue.claim(db, 5, 60)]

    with ThreadPoolExecutor(8) as pool:
        claimed = [i for batch in pool.map(claim_some, range(16)) for i in batch]
    assert len(claimed) == len(set(claimed))
    assert ours <= set(claimed)


def test_each_call_end_queues_one_postback_and_a_key_without_a_url_none(
        env, client, sessions, market):
    m, key, _ = keyed(env, market, "http://127.0.0.1:9/cv?u={uuid}")
    uuid = end_call(client, sessions, m, key)
    with sessions() as db:
        # The edge may report an end twice (the dialog's end and the BYE).
        [call] = db.execute(text("SELECT c.id, c.token FROM calls c JOIN reservations r"
                                 " ON r.id = c.reservation_id WHERE r.uuid = :u"), {"u": uuid}).all()
        db.execute(text("CALL rtb_call_event(:c, :t, 'ended', 0, NULL)"), {"c": call.id, "t": call.token})
    assert len(postbacks_of(sessions, uuid)) == 1
    silent = market()
    assert postbacks_of(sessions, end_call(client, sessions, silent, silent.key)) == []


def test_a_call_the_edge_lost_queues_its_postback_when_the_sweep_ends_it(
        env, client, sessions, market):
    m, key, _ = keyed(env, market, "http://127.0.0.1:9/cv?u={uuid}")
    rtb = client.post("/rtbs.json", query_string={"key": key}).get_json()["rtb"]
    with sessions() as db:
        claimed = claim(db, rtb["uuid"], m.publisher_id, f"lost-{rtb['uuid']}")
        db.execute(text("UPDATE calls SET claimed_at = NOW(3) - INTERVAL 3 MINUTE WHERE id = :c"),
                   {"c": claimed.call})
        db.commit()
        assert postbacks_of(sessions, rtb["uuid"]) == []
        db.execute(text("CALL rtb_expire(10800)"))
        db.commit()
    [queued] = postbacks_of(sessions, rtb["uuid"])
    assert queued.state == "pending"


def test_retention_prunes_postbacks_as_old_as_the_history_it_deletes(env, sessions, market):
    m = market()
    # Rows of calls no test makes: ids far past any real one.
    old, young = 2**62 + 2 * m.key_id, 2**62 + 2 * m.key_id + 1
    with sessions() as db:
        for call_row, age in ((old, 120), (young, 1)):
            db.execute(text("INSERT INTO postbacks (call_row_id, key_id, state, created_at)"
                            " VALUES (:c, :k, 'delivered', NOW(3) - INTERVAL :age DAY)"),
                       {"c": call_row, "k": m.key_id, "age": age})
        db.commit()

    def retained() -> list[int]:
        # Kamailio's own run, every minute, makes a run started meanwhile return at once.
        with sessions() as db:
            db.execute(text("CALL rtb_retain(90, 1000)"))
            return db.scalars(text("SELECT call_row_id FROM postbacks WHERE key_id = :k"),
                              {"k": m.key_id}).all()

    assert eventually(lambda: retained() == [young], 10)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/{uuid}", "http://127.0.0.1/{nope}"])
def test_key_edit_refuses_a_postback_url_that_is_not_http_or_names_an_unknown_token(
        env, market, url):
    m = market()
    done = run(env, "key", "edit", str(m.key_id), "--postback-url", url)
    assert done.returncode == 1 and done.stderr.startswith("error: ")
    assert run_json(env, "key", "edit", str(m.key_id))["postback_url"] is None


def test_a_call_through_the_edge_is_posted_once(env, client, sessions, market, receivers,
                                                postback_worker, buyers, edge, workdir):
    receiver = receivers().start()
    buyer = buyers()
    m = market(buyer.uri, min_seconds=1)
    made = run_json(env, "key", "edit", str(m.key_id), "--postback-url",
                    receiver.url + "/cv?u={uuid}&c={converted}", "--new-postback-secret")
    postback_worker()
    uuid = client.post("/rtbs.json", query_string={"key": m.key}).get_json()["rtb"]["uuid"]
    call = dial(workdir, edge, uuid, source_ip=m.ip, hold_ms=2000)
    assert call.returncode == 0, call.log
    assert eventually(lambda: state_of(sessions, uuid) == "delivered", 20)
    [got] = receiver.of(uuid)
    assert got.signed_with(made["postback_secret"])
    assert got.query == {"u": uuid, "c": "true"}
    assert (got.fields["status"], got.fields["converted"]) == ("completed", True)
    assert 1.0 < got.fields["talk_seconds"] < 4.0
    assert len(postbacks_of(sessions, uuid)) == 1
