"""`python -m app.stack up` / `down` (what `make up` / `make down` run): a whole
second instance, gunicorn included, beside the session's own."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from http.client import HTTPConnection
from pathlib import Path

import pytest

from app import migrations
from app.stack.redis import private_url
from tests.conftest import stack_env
from tests.market import next_loopback
from tests.polling import eventually
from tests.rtbctl import run_json
from tests.sip import dial

PYTHON = sys.executable


def http(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers=headers or {},
                                     method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture(scope="module")
def second(tmp_path_factory, kamailio):
    env = {**os.environ, **stack_env(tmp_path_factory.mktemp("second"))}

    def stack(command: str) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, "-m", "app.stack", command], env=env, capture_output=True,
                              text=True, timeout=120)

    def rtbctl(*args: str) -> dict:
        return run_json(env, *args)

    started = stack("up")
    assert started.returncode == 0, started.stderr
    yield env, stack, rtbctl
    stack("down")


def test_up_serves_pings_over_http_beside_another_instance(second, client):
    env, _, rtbctl = second
    publisher = rtbctl("publisher", "add", "second-publisher")["id"]
    campaign = rtbctl("campaign", "add", "second-campaign")["id"]
    rtbctl("target", "add", str(campaign), "--sip-uri", "sip:b@127.0.0.1:9", "--payout", "3",
           "--min-seconds", "30")
    key = rtbctl("key", "add", str(campaign), str(publisher))["key"]
    base = f"http://127.0.0.1:{env['RTB_HTTP_PORT']}"
    status, body = http(f"{base}/rtbs.json?key={key}", data=b"")
    assert status == 200 and body["rtb"]["status"] == "reserved"
    # The session's instance does not know this key: separate databases.
    assert client.post("/rtbs.json", query_string={"key": key}).status_code == 401


def test_gunicorn_closes_each_connection_after_its_answer(second):
    """So a client's next ping goes to a worker with a thread free, not back to
    one whose threads all wait on buyers."""
    env, _, _ = second
    connection = HTTPConnection("127.0.0.1", int(env["RTB_HTTP_PORT"]), timeout=10)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        assert response.status == 200 and json.load(response) == {"status": "ok"}
        assert response.getheader("Connection") == "close"
    finally:
        connection.close()


def test_the_access_log_has_the_path_but_never_the_postback_key(second):
    env, _, rtbctl = second
    publisher = rtbctl("publisher", "add", "logged-publisher")["id"]
    campaign = rtbctl("campaign", "add", "logged-campaign")["id"]
    key = rtbctl("key", "add", str(campaign), str(publisher))["key"]
    status, _ = http(f"http://127.0.0.1:{env['RTB_HTTP_PORT']}/rtbs.json?key={key}", data=b"")
    assert status == 200
    log = Path(env["RTB_VAR_DIR"]) / "gunicorn" / "access.log"
    # gunicorn writes the line just after the answer has gone out.
    assert eventually(lambda: '"POST /rtbs.json HTTP/1.1" 200' in log.read_text(), 10)
    assert key not in log.read_text()


def test_every_log_in_the_state_folder_is_for_its_owner_alone(second):
    env, _, rtbctl = second
    rtbctl("publisher", "add", "log-mode-publisher")
    logs = list(Path(env["RTB_VAR_DIR"]).rglob("*.log"))
    assert {log.name for log in logs} >= {"mariadb.log", "redis.log", "kamailio.log",
                                          "gunicorn.log", "access.log", "postbacks.log"}, logs
    for log in logs:
        assert stat.S_IMODE(log.stat().st_mode) & 0o037 == 0, (log, oct(log.stat().st_mode))


def test_up_starts_the_postback_worker_outside_gunicorn(second):
    state = Path(second[0]["RTB_VAR_DIR"]) / "postbacks"
    os.kill(int((state / "postbacks.pid").read_text()), 0)
    assert "postback worker started" in (state / "postbacks.log").read_text()


def test_gunicorn_refuses_a_body_over_64_kib_with_json(second):
    env = second[0]
    status, body = http(f"http://127.0.0.1:{env['RTB_HTTP_PORT']}/rtbs.json",
                        data=json.dumps({"key": "k", "x": "y" * 70000}).encode(),
                        headers={"Content-Type": "application/json"})
    assert status == 413 and body["error"]["code"] == "payload_too_large"


def test_down_stops_everything_and_keeps_the_data(second):
    env, stack, rtbctl = second
    before = rtbctl("publisher", "add", "kept-across-restart")["id"]
    assert stack("down").returncode == 0
    var = env["RTB_VAR_DIR"]
    assert not any(f.endswith(".pid") for _, _, files in os.walk(var) for f in files)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{env['RTB_HTTP_PORT']}/healthz", timeout=2)
    assert stack("up").returncode == 0
    after = rtbctl("publisher", "add", "added-after-restart")["id"]
    assert after == before + 1


def test_an_existing_database_server_and_redis_are_used_when_given(tmp_path, database, redis,
                                                                   buyers):
    """RTB_DATABASE_URL: no private MariaDB; the operator made the database and users,
    upgraded it with rtbctl and ran grants.sql, as the README says. RTB_REDIS_URL:
    no private Redis; topos keeps its records in the operator's (a database of its own)."""
    database.root_sql(
        "CREATE DATABASE rtb_existing;"
        "CREATE USER 'existing_app'@'127.0.0.1' IDENTIFIED BY 'app-pw';"
        "GRANT ALL ON rtb_existing.* TO 'existing_app'@'127.0.0.1';"
        "CREATE USER 'existing_kamailio'@'127.0.0.1' IDENTIFIED BY 'kam-pw';")
    port = database.settings.db_port
    app_url = f"mysql+pymysql://existing_app:app-pw@127.0.0.1:{port}/rtb_existing"
    env = {**os.environ, **stack_env(tmp_path / "var"), "RTB_DATABASE_URL": app_url,
           "RTB_KAMAILIO_DATABASE_URL":
               f"mysql://existing_kamailio:kam-pw@127.0.0.1:{port}/rtb_existing",
           "RTB_REDIS_URL": private_url(redis.settings, db=5)}
    rtbctl_path = os.path.join(os.path.dirname(PYTHON), "rtbctl")
    upgraded = subprocess.run([rtbctl_path, "db", "upgrade", "--json"], env=env,
                              capture_output=True, text=True, timeout=60)
    assert json.loads(upgraded.stdout) == {"revision": migrations.head()}, upgraded.stderr
    database.grant_edge("'existing_kamailio'@'127.0.0.1'", "rtb_existing")
    stack = [PYTHON, "-m", "app.stack"]
    started = subprocess.run([*stack, "up"], env=env, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        assert not (tmp_path / "var" / "mariadb").exists()
        assert not (tmp_path / "var" / "redis").exists()
        b = buyers()

        def rtbctl(*args: str) -> dict:
            return run_json(env, *args)

        publisher = str(rtbctl("publisher", "add", "existing-pub")["id"])
        ip = next_loopback()
        rtbctl("publisher", "allow-ip", publisher, ip)
        campaign = str(rtbctl("campaign", "add", "existing-campaign")["id"])
        rtbctl("target", "add", campaign, "--sip-uri", b.uri, "--payout", "4", "--min-seconds", "1")
        key = rtbctl("key", "add", campaign, publisher)["key"]
        status, body = http(f"http://127.0.0.1:{env['RTB_HTTP_PORT']}/rtbs.json?key={key}", b"")
        assert status == 200, body
        call = dial(tmp_path, ("127.0.0.1", int(env["RTB_SIP_PORT"])), body["rtb"]["uuid"],
                    source_ip=ip)
        assert call.returncode == 0, call.log
        assert redis.cli("--scan", db=5).split(), "no topos record in the operator's Redis"
    finally:
        subprocess.run([*stack, "down"], env=env, capture_output=True, timeout=120)
