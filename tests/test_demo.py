"""`make demo` (python -m app.stack.demo): the whole stack in its own state folder,
a demo market and live traffic, run for a short while, then looked at with
rtbctl on its database."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app import admin
from app.db import make_sessionmaker
from app.models import Publisher
from app.settings import Settings
from app.stack.demo import market
from app.stack.demo.environment import demo_env
from app.stack.mariadb import PrivateMariaDB
from tests import rtbctl
from tests.polling import eventually
from tests.sip import free_port, free_sip_port
from tests.test_metrics import scrape, value

TRAFFIC_SECONDS = 10
DEMO = [sys.executable, "-m", "app.stack.demo"]


def launch_env(var: Path) -> dict[str, str]:
    """What `make demo` would be run with, on free ports and a state folder of the test's."""
    ports = {f"RTB_DEMO_{name}_PORT": str(free_port(kind=socket.SOCK_STREAM))
             for name in ("HTTP", "RPC", "DB", "REDIS", "METRICS")}
    return {**os.environ, "RTB_VAR_DIR": str(var), "RTB_DEMO_SIP_PORT": str(free_sip_port()),
            **ports}


def processes_in(folder: Path) -> list[int]:
    """Processes whose command line names the folder or that work in it."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            continue
        if str(folder) in cmdline or cwd.is_relative_to(folder):
            found.append(int(proc.name))
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's environment, its output, and its private MariaDB started again once it stopped."""
    env = launch_env(tmp_path_factory.mktemp("var"))
    done = subprocess.run([*DEMO,
                           "--for-seconds", str(TRAFFIC_SECONDS)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    settings = Settings.from_env(demo_env(env))
    database = PrivateMariaDB(settings)
    database.start()
    yield demo_env(env), settings, done.stdout
    database.stop()


def test_demo_calls_connect_and_complete_within_its_first_ten_seconds(demo):
    env, _, _ = demo
    [row] = rtbctl.run_json(env, "report", "--since", "1h")
    assert row["pings"] >= 3
    assert row["calls"] >= 3
    assert row["answered"] == row["calls"]
    assert row["converted"] == row["calls"]
    assert row["payout"] > 0


def test_demo_keeps_its_state_apart_from_make_runs(demo):
    env, settings, _ = demo
    assert settings.var_dir.name == "demo"
    assert (settings.var_dir / "mariadb").is_dir()
    assert not (settings.var_dir.parent / "mariadb").exists()


def test_demo_prints_its_key_and_seeding_again_keeps_that_key(demo):
    _, settings, output = demo
    printed = re.search(r"Key\s+(\w+)", output)[1]
    sessions = make_sessionmaker(settings)
    uris = [f"sip:buyer@127.0.0.1:{port}" for port in (5901, 5902, 5903)]
    with sessions() as db:
        assert market.seed(db, uris, settings.var_dir / "demo-key") == printed
    with sessions() as db:
        targets = [t.sip_uri for t in admin.list_targets(db)]
        publishers = db.scalar(select(func.count()).select_from(Publisher))
    sessions.kw["bind"].dispose()
    assert targets == uris
    assert publishers == 1


def test_the_running_demo_counts_its_traffic_in_both_metrics_and_ctrl_c_stops_it_all(tmp_path):
    env = launch_env(tmp_path)
    settings = Settings.from_env(demo_env(env))
    app_metrics = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    edge_metrics = f"http://127.0.0.1:{settings.rpc_port}/metrics"
    demo = subprocess.Popen(DEMO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        output = []
        for line in iter(demo.stdout.readline, ""):
            output.append(line)
            if " -> calling " in line:
                break
        printed = "".join(output)
        assert app_metrics in printed and edge_metrics in printed, printed
        assert value(scrape(app_metrics), "rtb_pings_total", outcome="reserved", reason="") >= 1
        assert eventually(lambda: value(scrape(edge_metrics), "kamailio_rtb_claims_total",
                                        result="claimed") >= 1, 10)
        assert processes_in(tmp_path), printed
        demo.send_signal(signal.SIGINT)
        assert demo.wait(90) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        demo.stdout.close()
    assert processes_in(tmp_path) == []
