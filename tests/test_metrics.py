"""Prometheus metrics from both halves of an instance started as `make up`
starts it: the app's on RTB_METRICS_PORT, added up over gunicorn's workers,
never on the publishers' port; Kamailio's at /metrics on its loopback HTTP
port. A ping and a call move the counters they should; so do failed digest
attempts (on the session's Kamailio), and a database or a Kamailio out of
reach (on an app in this process, which counts in its own registry)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from app import create_app
from app.db import make_sessionmaker
from app.settings import Settings
from tests.conftest import SIP_DOMAIN, stack_env
from tests.http_buyers import HttpBuyers
from tests.market import make_market, next_loopback
from tests.private_stack import eventually
from tests.raw_sip import digest_invite
from tests.sip import Buyer, dial, free_port
from tests.test_sip_edge import add_sip_user, reserve
from tests.test_sip_security import banned  # noqa: F401 (a fixture)

SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)\s*(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample at url: (name, labels) => value."""
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    found = {}
    for line in body.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = frozenset(LABEL.findall(match[2] or ""))
            found[(match[1], labels)] = float(match[3])
    return found


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def instance(tmp_path_factory, kamailio):
    """`python -m app.stack up` (make up) with two workers; its banner; `down` after."""
    env = {**os.environ, **stack_env(tmp_path_factory.mktemp("metrics"))}

    def stack(command: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app.stack", command], env=env,
                              capture_output=True, text=True, timeout=120)

    started = stack("up")
    assert started.returncode == 0, started.stderr
    settings = Settings.from_env(env)
    sessions = make_sessionmaker(settings)
    yield settings, sessions, started.stdout
    sessions.kw["bind"].dispose()
    stack("down")


def urls(settings: Settings) -> tuple[str, str, str]:
    """The publishers' API, the app's metrics, Kamailio's metrics."""
    return (f"http://127.0.0.1:{settings.http_port}",
            f"http://127.0.0.1:{settings.metrics_port}/metrics",
            f"http://127.0.0.1:{settings.rpc_port}/metrics")


def post(url: str) -> int:
    return post_as("POST", url)


def post_as(method: str, url: str) -> int:
    request = urllib.request.Request(url, data=b"", method=method)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


def test_up_prints_both_metrics_urls(instance):
    settings, _, banner = instance
    _, app_metrics, kamailio_metrics = urls(settings)
    assert app_metrics in banner and kamailio_metrics in banner


def test_the_publishers_port_serves_no_metrics(instance):
    api, _, _ = urls(settings := instance[0])
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{api}/metrics", timeout=5)
    refused.value.close()
    assert refused.value.code == 404
    assert settings.metrics_port != settings.http_port


def test_pings_answered_by_every_worker_add_up(instance):
    settings, sessions, _ = instance
    api, app_metrics, _ = urls(settings)
    open_, closed = make_market(sessions), make_market(sessions, [{"states": "CA"}])
    before = scrape(app_metrics)
    requests = ([f"{api}/rtbs.json?key={open_.key}"] * 20
                + [f"{api}/rtbs.json?key={closed.key}&caller_zip=10001"] * 10
                + [f"{api}/rtbs.json?key=not-a-key"] * 5)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, requests))
    assert statuses.count(200) == 30 and statuses.count(401) == 5
    after = scrape(app_metrics)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("rtb_pings_total", outcome="reserved", reason="") == 20
    assert moved("rtb_pings_total", outcome="rejected", reason="geo") == 10
    assert moved("rtb_pings_total", outcome="error", reason="invalid_key") == 5
    assert moved("rtb_ping_seconds_count") == 35
    assert moved("rtb_ping_seconds_bucket", le="+Inf") == 35
    # Both workers answered some: the sum spans their files.
    writers = {name.rsplit("_", 1)[1] for name in os.listdir(settings.metrics_dir)
               if name.startswith("counter_")}
    assert len(writers) >= 2, writers


def test_pass_through_buyers_answers_are_counted_by_outcome(instance):
    settings, sessions, _ = instance
    api, app_metrics, _ = urls(settings)
    buyers = HttpBuyers()
    try:
        bids = buyers.add("bids", body={"bidAmount": 7, "sipAddress": "sip:b@127.0.0.1:9"})
        quiet = buyers.add("quiet", status=204)
        m = make_market(sessions, [{"sip_uri": None, "payout": None, "bid_url": url}
                                   for url in (bids, quiet)])
        before = scrape(app_metrics)
        assert post(f"{api}/rtbs.json?key={m.key}") == 200
        after = scrape(app_metrics)
    finally:
        buyers.stop()
    assert value(after, "rtb_bids_total", outcome="bid") - value(
        before, "rtb_bids_total", outcome="bid") == 1
    assert value(after, "rtb_bids_total", outcome="no_bid") - value(
        before, "rtb_bids_total", outcome="no_bid") == 1


def test_a_worker_that_dies_leaves_its_counts_in_the_sum(instance):
    settings, sessions, _ = instance
    api, app_metrics, _ = urls(settings)
    m = make_market(sessions)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(post, [f"{api}/rtbs.json?key={m.key}"] * 12))
    counted = value(scrape(app_metrics), "rtb_pings_total", outcome="reserved", reason="")
    master = int((settings.var_dir / "gunicorn" / "gunicorn.pid").read_text())
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    # The worker killed counted some of them.
    assert (settings.metrics_dir / f"counter_{workers[0]}.db").exists()
    os.kill(int(workers[0]), signal.SIGKILL)
    assert eventually(lambda: workers[0] not in Path(
        f"/proc/{master}/task/{master}/children").read_text().split(), 10)
    assert value(scrape(app_metrics), "rtb_pings_total", outcome="reserved", reason="") == counted


def test_a_ping_and_its_call_move_the_counters_of_both_halves(instance, tmp_path):
    settings, sessions, _ = instance
    api, app_metrics, kamailio_metrics = urls(settings)
    buyer = Buyer(tmp_path)
    try:
        m = make_market(sessions, [{"sip_uri": buyer.uri}])
        app_before, edge_before = scrape(app_metrics), scrape(kamailio_metrics)
        request = urllib.request.Request(f"{api}/rtbs.json?key={m.key}", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=20) as response:
            uuid = json.load(response)["rtb"]["uuid"]
        edge = (settings.sip_addr, settings.sip_port)
        call = dial(tmp_path, edge, uuid, source_ip=m.ip)
        assert call.returncode == 0, call.log
        refused = dial(tmp_path, edge, "00000000-0000-4000-8000-000000000000", source_ip=m.ip,
                       refused_with=404)
        assert refused.returncode == 0, refused.log
    finally:
        buyer.stop()
    app_after = scrape(app_metrics)
    assert value(app_after, "rtb_pings_total", outcome="reserved", reason="") - \
        value(app_before, "rtb_pings_total", outcome="reserved", reason="") == 1

    def moved(name: str, **labels: str) -> float:
        return value(scrape(kamailio_metrics), name, **labels) - value(edge_before, name, **labels)

    # The dialog's end, and with it the last counter, may come a moment after SIPp exits.
    assert eventually(lambda: moved("kamailio_rtb_invites_total", code="200", reason="OK") == 1,
                      5)
    assert moved("kamailio_rtb_claims_total", result="claimed") == 1
    assert moved("kamailio_rtb_claims_total", result="not_found") == 1
    assert moved("kamailio_rtb_refusals_total", code="404", reason="Reservation Not Found") == 1
    assert moved("kamailio_rtb_invites_total", code="404", reason="Reservation Not Found") == 1


def test_confirms_are_counted_by_the_status_or_the_error_they_answer(instance):
    settings, sessions, _ = instance
    api, app_metrics, _ = urls(settings)
    m = make_market(sessions)
    request = urllib.request.Request(f"{api}/rtbs.json?key={m.key}", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=20) as response:
        uuid = json.load(response)["rtb"]["uuid"]
    before = scrape(app_metrics)
    confirm = f"{api}/rtbs/{{}}.json?key={m.key}&status=confirmed"
    assert post_as("PUT", confirm.format(uuid)) == 200
    assert post_as("PATCH", confirm.format("00000000-0000-4000-8000-000000000000")) == 404
    after = scrape(app_metrics)
    for result in ("confirmed", "reservation_not_found"):
        assert value(after, "rtb_confirms_total", result=result) - \
            value(before, "rtb_confirms_total", result=result) == 1


def test_kamailio_shows_its_own_statistics_without_the_rpc_secret(instance):
    *_, kamailio_metrics = urls(instance[0])
    names = {name for name, _ in scrape(kamailio_metrics)}
    for wanted in ("kamailio_dialog_active_dialogs", "kamailio_shmem_used_size",
                   "kamailio_mysql_driver_errors",
                   "kamailio_tmx_active_transactions", "kamailio_sl_200_replies"):
        assert wanted in names, wanted


def test_failed_digest_attempts_and_the_ban_they_earn_are_counted(
        client, market, edge, settings, sessions, banned):
    m = market(whitelist=False)
    user = add_sip_user(sessions, settings, m.publisher_id, "right")
    uri, guesser = f"sip:{reserve(client, m.key)}@{SIP_DOMAIN}", next_loopback()
    banned.append(guesser)
    kamailio_metrics = f"http://127.0.0.1:{settings.rpc_port}/metrics"
    before = scrape(kamailio_metrics)
    for _ in range(settings.sip_auth_failures):
        assert digest_invite(edge, guesser, uri, user, "wrong") == 403
    after = scrape(kamailio_metrics)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("kamailio_rtb_auth_failures_total") == settings.sip_auth_failures
    assert moved("kamailio_rtb_bans_total", why="failed digest attempts") == 1
    assert moved("kamailio_rtb_refusals_total", code="403", reason="Bad Credentials") == \
        settings.sip_auth_failures


def sample(name: str, **labels: str) -> float:
    """A sample of this process's own registry: the in-process app counts there."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_database_out_of_reach_is_counted(settings, sessions):
    away = create_app(dataclasses.replace(settings, db_port=free_port(kind=socket.SOCK_STREAM)))
    before = sample("rtb_database_failures_total", kind="unavailable")
    assert away.test_client().get("/healthz").status_code == 503
    assert sample("rtb_database_failures_total", kind="unavailable") - before == 1


def test_a_push_kamailio_did_not_take_is_counted(settings, sessions, market):
    """The reservation stands: Kamailio finds it in the database when dialled."""
    deaf = dataclasses.replace(settings, rpc_port=free_port(kind=socket.SOCK_STREAM))
    app = create_app(deaf, make_sessionmaker(deaf, sessions.kw["bind"]))
    m = market()
    before = sample("rtb_kamailio_push_failures_total", method="htable.setxs")
    rtb = app.test_client().post("/rtbs.json", query_string={"key": m.key}).get_json()["rtb"]
    assert rtb["status"] == "reserved"
    assert sample("rtb_kamailio_push_failures_total", method="htable.setxs") - before == 1
