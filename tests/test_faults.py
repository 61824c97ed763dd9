"""Faults on an instance of its own (tests/private_stack.py): Kamailio
restarted and MariaDB stopped under pings and calls, a gunicorn worker killed
in the middle of a ping. Nothing the clients were told is lost, nothing is
half-written, and everything works again without restarting anything else."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, text

from app import admin
from app.models import Number
from app.settings import Settings
from app.stack.postbacks import PostbackWorker
from tests.instance import Pinger
from tests.polling import eventually
from tests.postback_receiver import Receiver
from tests.private_stack import PrivateStack
from tests.procedures import call_event, claim
from tests.sip import dial

OUTAGE_SECONDS = 10


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    started = PrivateStack(tmp_path_factory.mktemp("faults")).start()
    yield started
    started.stop()


def call_row(stack: PrivateStack, uuid: str):
    rows = stack.rows("SELECT c.answered_at, c.ended_at, c.talk_seconds, r.status FROM calls c "
                      "JOIN reservations r ON r.id = c.reservation_id WHERE r.uuid = :uuid",
                      uuid=uuid)
    return rows[-1] if rows else None


def dial_in_background(workdir, stack: PrivateStack, uuid: str, ip: str, hold_ms: int):
    (workdir / uuid).mkdir()
    pool = ThreadPoolExecutor(1)
    return pool, pool.submit(dial, workdir / uuid, stack.edge, uuid, source_ip=ip, hold_ms=hold_ms)


def test_a_kamailio_restart_loses_no_reservation_and_no_call_and_claims_none_twice(
        stack, buyers, workdir):
    b, slow = buyers(calls=200), buyers(scenario="buyer_slow.xml")
    m, late = stack.market([{"sip_uri": b.uri}]), stack.market([{"sip_uri": slow.uri}])
    across, ringing = stack.ping(m.key)[1]["rtb"]["uuid"], stack.ping(late.key)[1]["rtb"]["uuid"]
    pool, up = dial_in_background(workdir, stack, across, m.ip, hold_ms=6000)
    assert eventually(lambda: (call_row(stack, across) or [None])[0] is not None, 30)
    ring_pool, answered_late = dial_in_background(workdir, stack, ringing, late.ip, hold_ms=1000)
    assert slow.messages_wait_for(ringing, timeout=30)

    pinger = Pinger(stack, m.key)
    pinger.start()
    stack.kamailio.stop()
    made_while_down = stack.ping(m.key)[1]["rtb"]["uuid"]
    stack.kamailio.start()
    answers = pinger.stop()

    # The call up across the restart: its BYE went through the new Kamailio,
    # which had no dialog for it, and its end was recorded all the same.
    call = up.result(timeout=60)
    pool.shutdown()
    assert call.returncode == 0, call.log
    _, ended, talk, status = call_row(stack, across)
    assert ended is not None and talk > 0 and status == "completed"
    # The call ringing across it was answered through the new Kamailio: its
    # ACK recorded the answer, so its BYE uses the reservation up.
    call = answered_late.result(timeout=60)
    ring_pool.shutdown()
    assert call.returncode == 0, call.log
    answered, ended, talk, status = call_row(stack, ringing)
    assert answered is not None and ended is not None and status == "completed"

    # HTTP never depended on Kamailio; every live reservation, made before,
    # during or after the restart, connects once, and only once.
    assert all(isinstance(a, tuple) and a[0] == 200 for a in answers), pinger.codes()
    live = [made_while_down, *pinger.reserved()]
    calls = dial(workdir, stack.edge, live, source_ip=m.ip, rate=20, hold_ms=100)
    assert calls.returncode == 0 and calls.successful == len(live), calls.log
    again = dial(workdir, stack.edge, [across, made_while_down], source_ip=m.ip, refused_with=410)
    assert again.returncode == 0, again.log
    per_reservation = stack.rows(
        "SELECT COUNT(c.id) FROM reservations r LEFT JOIN calls c ON c.reservation_id = r.id "
        "WHERE r.key_id = :key GROUP BY r.id", key=m.key_id)
    assert [n for (n,) in per_reservation] == [1] * (len(live) + 1)

    # The expiry timer runs in the new Kamailio too.
    short = stack.market([{"sip_uri": b.uri}], ttl=1)
    expiring = stack.ping(short.key)[1]["rtb"]["uuid"]
    assert eventually(lambda: stack.rows("SELECT status FROM reservations WHERE uuid = :u",
                                         u=expiring)[0][0] == "expired", 20)


def test_a_call_up_across_a_kamailio_killed_outright_hangs_up_through_the_new_one(
        stack, buyers, workdir):
    """topos's records live in Redis, not in Kamailio's memory: a SIGKILL
    (no chance to write anything down) loses none of them."""
    b = buyers()
    m = stack.market([{"sip_uri": b.uri}])
    across = stack.ping(m.key)[1]["rtb"]["uuid"]
    pool, up = dial_in_background(workdir, stack, across, m.ip, hold_ms=6000)
    assert eventually(lambda: (call_row(stack, across) or [None])[0] is not None, 30)

    os.killpg(stack.kamailio.service.pid(), signal.SIGKILL)
    assert eventually(lambda: not stack.kamailio.service.alive(), 10)
    stack.kamailio.stop()
    stack.kamailio.start()

    # The publisher's BYE, routed by the edge's own Route, reached the buyer
    # through the new Kamailio, and the buyer's 200 came back the same way.
    call = up.result(timeout=60)
    pool.shutdown()
    assert call.returncode == 0, call.log
    assert b.wait() == 0
    _, ended, talk, status = call_row(stack, across)
    assert ended is not None and talk > 0 and status == "completed"


def test_a_database_outage_answers_503_keeps_calls_up_and_recovers_alone(stack, buyers, workdir):
    b = buyers(calls=2)
    m = stack.market([{"sip_uri": b.uri}])
    with stack.sessions() as db:
        admin.set_sip_user(db, m.publisher_id, f"pub{m.publisher_id}", "secret",
                           stack.settings.sip_realm, stack.settings.sip_domain)
        db.commit()
    waiting = stack.ping(m.key)[1]["rtb"]["uuid"]
    across = stack.ping(m.key)[1]["rtb"]["uuid"]
    pool, up = dial_in_background(workdir, stack, across, m.ip, hold_ms=5000)
    assert eventually(lambda: (call_row(stack, across) or [None])[0] is not None, 30)

    pinger = Pinger(stack, m.key)
    pinger.start()
    stopped = time.monotonic()
    with stack.database_down():
        assert eventually(lambda: "database_unavailable" in pinger.codes(), 20), pinger.codes()
        # The edge cannot claim, nor check a password: 503, try again later.
        refused = dial(workdir, stack.edge, waiting, source_ip=m.ip, refused_with=503)
        assert refused.returncode == 0, refused.log
        digest = dial(workdir, stack.edge, waiting, source_ip="127.0.0.1",
                      user=f"pub{m.publisher_id}", password="secret", refused_with=503)
        assert digest.returncode == 0, digest.log
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
    served = len(pinger.reserved())
    assert eventually(lambda: len(pinger.reserved()) > served + 5, 30), pinger.codes()
    answers = pinger.stop()

    # The call that was up hung up during the outage; its end was recorded
    # once the database was back, with the time it happened.
    call = up.result(timeout=60)
    pool.shutdown()
    assert call.returncode == 0, call.log
    assert eventually(lambda: call_row(stack, across)[1] is not None, 20)
    assert 4 < call_row(stack, across)[2] < 9
    again = dial(workdir, stack.edge, waiting, source_ip=m.ip)
    assert again.returncode == 0, again.log

    # Only 200 or 503 with the JSON error, never a hung request or a 500.
    assert all(isinstance(a, tuple) and a[0] in (200, 503) for a in answers), pinger.codes()
    assert {a[1]["error"]["code"] for a in answers if a[0] == 503} == {"database_unavailable"}
    assert_consistent(stack, m.key_id, {waiting, across, *pinger.reserved()})


def assert_consistent(stack: PrivateStack, key_id: int, told: set[str]) -> None:
    """The key's reservations are exactly those its pings were answered with,
    each with its ping log row, each claim with its call, no call left open."""
    stored = {u for (u,) in stack.rows("SELECT uuid FROM reservations WHERE key_id = :k", k=key_id)}
    assert stored == told
    unlogged = stack.rows("SELECT r.uuid FROM reservations r LEFT JOIN pings p "
                          "ON p.reservation_id = r.id WHERE r.key_id = :k AND p.id IS NULL", k=key_id)
    assert unlogged == []
    unclaimed = stack.rows("SELECT r.uuid FROM reservations r LEFT JOIN calls c ON c.reservation_id = r.id "
                           "WHERE r.key_id = :k AND r.status IN ('claimed', 'completed') "
                           "AND c.id IS NULL", k=key_id)
    assert unclaimed == []
    open_calls = stack.rows("SELECT c.call_id FROM calls c JOIN reservations r ON r.id = c.reservation_id "
                            "WHERE r.key_id = :k AND c.ended_at IS NULL", k=key_id)
    assert open_calls == []


def test_a_worker_killed_in_the_middle_of_a_ping_leaves_no_partial_reservation(stack):
    m = stack.market([{"sip_uri": "sip:buyer@127.0.0.1:9"}], rate_limit=100)
    with stack.sessions() as db:
        number = admin.add_number(db, "+18005550199", m.campaign_id).number
        db.commit()
    caller = "+12025550147"
    # Hold the pool number's row: the ping stops there, its reservation written
    # but not committed, until its worker is killed.
    with stack.sessions() as blocker:
        blocker.execute(select(Number).where(Number.number == number).with_for_update())
        pool = ThreadPoolExecutor(1)
        cut = pool.submit(stack.ping, m.key, caller_number=caller)
        assert eventually(lambda: waiting_writes(stack) > 0, 20)
        [worker] = stack.worker_pids()
        os.kill(worker, signal.SIGKILL)
        with pytest.raises(OSError):
            cut.result(timeout=30)
        pool.shutdown()
        blocker.rollback()

    assert stack.rows("SELECT uuid FROM reservations WHERE key_id = :k", k=m.key_id) == []
    assert stack.rows("SELECT id FROM pings WHERE key_id = :k", k=m.key_id) == []
    assert stack.rows("SELECT reservation_id FROM caller_reservations WHERE caller_number = :c "
                      "AND reservation_id IS NOT NULL", c=caller) == []
    # gunicorn has a new worker; the caller and the number are free.
    assert eventually(lambda: stack.worker_pids() not in ([], [worker]), 30)
    status, body = stack.ping(m.key, caller_number=caller)
    assert status == 200 and body["rtb"]["status"] == "reserved", body
    assert body["rtb"]["inbound_number"] == number
    assert_consistent(stack, m.key_id, {body["rtb"]["uuid"]})


def waiting_writes(stack: PrivateStack) -> int:
    """Rows written by transactions now waiting for a lock (the ping's, here)."""
    found = stack.database.root_sql(
        "SELECT IFNULL(SUM(trx_rows_modified), 0) FROM information_schema.INNODB_TRX "
        "WHERE trx_state = 'LOCK WAIT'")
    return int(found.strip())


def test_calls_kamailio_lost_track_of_end_and_free_their_buyer(stack):
    """As when Kamailio died between the claim and the relay, or a call up
    across a restart never hung up: no event will ever come for them."""
    m = stack.market([{"sip_uri": "sip:buyer@127.0.0.1:9", "min_seconds": 30}])
    ringing, talking = (stack.ping(m.key)[1]["rtb"]["uuid"] for _ in range(2))
    engine = stack.sessions.kw["bind"]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        for uuid, age in ((ringing, "claimed_at = claimed_at - INTERVAL 3 MINUTE"),
                          (talking, "answered_at = NOW(3) - INTERVAL 4 HOUR")):
            claim(db, uuid, m.publisher_id, uuid)
            db.execute(text(f"UPDATE calls SET {age} WHERE call_id = :u"), {"u": uuid})

    def ended(uuid: str):
        return stack.rows("SELECT c.final_status, c.talk_seconds, c.converted, r.status FROM calls c "
                          "JOIN reservations r ON r.id = c.reservation_id "
                          "WHERE c.call_id = :u AND c.ended_at IS NOT NULL", u=uuid)

    assert eventually(lambda: ended(ringing) and ended(talking), 20)
    # Its answer may only have been lost: the reservation is not given back.
    assert ended(ringing)[0][0::3] == (408, "claimed")
    assert ended(talking)[0][1:] == (10800, True, "completed")


def test_an_end_recorded_before_its_answer_uses_the_reservation_up(stack):
    """As in a soak run: the answer's event deadlocked and was queued, and the
    BYE's came first. The end alone must not give the reservation back (it
    was dialled again and connected twice); the late answer fills in the talk."""
    m = stack.market([{"sip_uri": "sip:buyer@127.0.0.1:9", "min_seconds": 30}])
    uuid = stack.ping(m.key)[1]["rtb"]["uuid"]
    engine = stack.sessions.kw["bind"]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        call = claim(db, uuid, m.publisher_id, uuid)
        answered = db.scalar(text("SELECT UNIX_TIMESTAMP(NOW(6))"))
        call_event(db, call, "ended", at=answered + 40)
        assert claim(db, uuid, m.publisher_id, "again").result == "used"
        call_event(db, call, "answered", 200, at=answered)
        call_event(db, call, "answered", 200, at=answered + 5)
    assert stack.rows("SELECT c.final_status, c.talk_seconds, c.converted, r.status FROM calls c "
                      "JOIN reservations r ON r.id = c.reservation_id WHERE r.uuid = :u",
                      u=uuid) == [(200, 40, True, "completed")]


def test_the_postback_worker_outlives_a_database_outage_and_delivers_after_it(stack):
    """`make run` stops everything when a part dies: the worker must not die with the database."""
    receiver = Receiver().start()
    env = {**os.environ, **stack.env, "RTB_POSTBACK_RETRY_SECONDS": "1"}
    worker = PostbackWorker(Settings.from_env(env))
    worker.service.env = env
    worker.start()
    try:
        m = stack.market([{"sip_uri": "sip:buyer@127.0.0.1:9"}])
        with stack.sessions() as db:
            admin.edit_key(db, admin.find_key(db, str(m.key_id)),
                           postback_url=receiver.url + "/cv?u={uuid}")
            db.commit()
        with stack.database_down():
            assert eventually(lambda: "database:" in worker.service.log_file.read_text(), 20)
        uuid = stack.ping(m.key)[1]["rtb"]["uuid"]
        engine = stack.sessions.kw["bind"]
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            call = claim(db, uuid, m.publisher_id, uuid)
            ended = db.scalar(text("SELECT UNIX_TIMESTAMP(NOW(6))"))
            call_event(db, call, "answered", 200, at=ended - 90)
            call_event(db, call, "ended", at=ended)
        assert eventually(lambda: [r.fields["uuid"] for r in receiver.received] == [uuid], 30)
        assert worker.service.alive()
    finally:
        worker.stop()
        receiver.stop()
