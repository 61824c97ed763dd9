"""The demo's environment: its own state folder and ports, the embedded database."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings
from app.stack.demo.environment import PORTS, demo_env


def test_the_demo_keeps_its_state_in_demo_under_the_state_folder(tmp_path):
    settings = Settings.from_env(demo_env({"RTB_VAR_DIR": str(tmp_path)}))
    assert settings.var_dir == tmp_path / "demo"


def test_the_demo_ports_do_not_follow_make_runs_but_their_own_variables():
    run = {"RTB_HTTP_PORT": "8180", "RTB_SIP_PORT": "5161", "RTB_DEMO_SIP_PORT": "5999"}
    settings = Settings.from_env(demo_env(run))
    assert settings.http_port == PORTS["RTB_HTTP_PORT"]
    assert settings.sip_port == 5999
    defaults = Settings.from_env({})
    ours = Settings.from_env(demo_env({}))
    for port in ("http_port", "sip_port", "rpc_port", "db_port", "redis_port", "metrics_port"):
        assert getattr(ours, port) != getattr(defaults, port)


def test_the_demo_runs_the_private_database_on_loopback_whatever_the_operator_set():
    operator = {"RTB_DATABASE_URL": "mysql+pymysql://rtb:pw@db.example:3306/rtb",
                "RTB_REDIS_URL": "redis://db.example:6379/0", "RTB_HTTP_HOST": "0.0.0.0",
                "RTB_SIP_ADDR": "192.0.2.10", "RTB_SIP_DOMAIN": "rtb.example"}
    settings = Settings.from_env(demo_env(operator))
    assert settings.private_database
    assert settings.redis_url_override is None
    assert (settings.http_host, settings.sip_addr, settings.sip_domain) == (
        "127.0.0.1", "127.0.0.1", "127.0.0.1")
    assert settings.var_dir.parent == Path(Settings.from_env({}).var_dir)
