"""Scale-out settings (RTB_DATABASE_URLS, RTB_KAMAILIO_DATABASE_URLS, RTB_EDGES,
RTB_ROLES), cluster discovery under the state folder, and which parts each
role starts. Pure logic: nothing is started."""

from __future__ import annotations

import json
from pathlib import Path

import pymysql
import pytest
from sqlalchemy.exc import OperationalError

from app.database_urls import (database_url, database_urls, edges, kamailio_database_url,
                               kamailio_database_urls)
from app.db import retried, try_again
from app.settings import Settings, SettingsError
from app.stack.__main__ import banner, parts
from app.writer import BACK_LOOKS, Writer

NODES = "mysql+pymysql://rtb:a@127.0.0.1:3311/rtb,mysql+pymysql://rtb:a@127.0.0.1:3312/rtb"


def settings_with(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"RTB_VAR_DIR": str(tmp_path), **env})


def write_cluster(var_dir: Path) -> None:
    cluster = var_dir / "cluster"
    cluster.mkdir()
    (cluster / "topology.json").write_text(json.dumps({
        "http": [{"url": "http://127.0.0.1:8281", "pid": 1}],
        "sip": [{"address": "127.0.0.1:5261", "rpc": "http://127.0.0.1:5281/RPC", "pid": 3},
                {"address": "127.0.0.1:5262", "rpc": "http://127.0.0.1:5282/RPC", "pid": 4}],
        "db": [{"port": 3312, "pid": 5, "writer": True}, {"port": 3311, "pid": 6, "writer": False}],
    }))
    (cluster / "credentials.json").write_text(json.dumps({"rtb": "app-pw", "kamailio": "edge-pw"}))


def test_a_list_of_database_urls_keeps_its_order_and_wins_over_the_single_url(tmp_path):
    s = settings_with(tmp_path, RTB_DATABASE_URLS=NODES,
                      RTB_DATABASE_URL="mysql+pymysql://rtb:a@127.0.0.1:9999/rtb")
    assert [url.port for url in database_urls(s)] == [3311, 3312]
    assert database_url(s).port == 3311
    assert not s.private_database
    # Kamailio falls back to the app's list, in db_mysql's spelling.
    assert kamailio_database_urls(s) == ["mysql://rtb:a@127.0.0.1:3311/rtb",
                                         "mysql://rtb:a@127.0.0.1:3312/rtb"]


def test_kamailio_has_a_list_of_its_own(tmp_path):
    s = settings_with(tmp_path, RTB_DATABASE_URLS=NODES, RTB_KAMAILIO_DATABASE_URLS=(
        "mysql://kamailio:k@127.0.0.1:3312/rtb, mysql://kamailio:k@127.0.0.1:3311/rtb"))
    assert kamailio_database_urls(s) == ["mysql://kamailio:k@127.0.0.1:3312/rtb",
                                         "mysql://kamailio:k@127.0.0.1:3311/rtb"]
    assert kamailio_database_url(s) == "mysql://kamailio:k@127.0.0.1:3312/rtb"


def test_one_machine_has_one_node_and_pushes_to_its_own_edge(tmp_path):
    s = settings_with(tmp_path, RTB_DATABASE_URL="mysql+pymysql://rtb:a@127.0.0.1:3306/rtb",
                      RTB_RPC_PORT="5999")
    assert [url.port for url in database_urls(s)] == [3306]
    assert edges(s) == ["http://127.0.0.1:5999/RPC"]
    assert s.roles == {"app", "edge", "db"}


def test_the_edges_come_from_rtb_edges(tmp_path):
    s = settings_with(tmp_path, RTB_EDGES="http://127.0.0.1:5281/RPC,http://127.0.0.1:5282/RPC")
    assert edges(s) == ["http://127.0.0.1:5281/RPC", "http://127.0.0.1:5282/RPC"]


def test_without_urls_a_clusters_nodes_and_edges_are_found_under_the_state_folder(tmp_path):
    write_cluster(tmp_path)
    s = settings_with(tmp_path)
    assert not s.private_database
    assert [(u.port, u.username, u.password) for u in database_urls(s)] == [
        (3312, "rtb", "app-pw"), (3311, "rtb", "app-pw")]
    assert kamailio_database_urls(s) == ["mysql://kamailio:edge-pw@127.0.0.1:3312/rtb",
                                         "mysql://kamailio:edge-pw@127.0.0.1:3311/rtb"]
    assert edges(s) == ["http://127.0.0.1:5281/RPC", "http://127.0.0.1:5282/RPC"]


def test_a_url_in_the_settings_wins_over_a_cluster_under_the_state_folder(tmp_path):
    write_cluster(tmp_path)
    s = settings_with(tmp_path, RTB_DATABASE_URL="mysql+pymysql://rtb:a@127.0.0.1:3306/rtb")
    assert [url.port for url in database_urls(s)] == [3306]
    assert edges(s) == [s.rpc_url]


def test_a_cluster_without_its_credentials_says_what_to_do(tmp_path):
    write_cluster(tmp_path)
    (tmp_path / "cluster" / "credentials.json").unlink()
    with pytest.raises(RuntimeError, match="cluster-up"):
        database_urls(settings_with(tmp_path))


@pytest.mark.parametrize("name, value, message", [
    ("RTB_DATABASE_URLS", "mysql+pymysql://a@h/rtb,postgresql://a@h/rtb", "RTB_DATABASE_URLS"),
    ("RTB_DATABASE_URLS", "mysql+pymysql://a@h/rtb,mysql+pymysql://a@h/rtb", "twice"),
    ("RTB_KAMAILIO_DATABASE_URLS", "db.internal:3306", "RTB_KAMAILIO_DATABASE_URLS"),
    ("RTB_EDGES", "127.0.0.1:5281", "RTB_EDGES"),
    ("RTB_ROLES", "app,sip", "RTB_ROLES"),
    ("RTB_ROLES", ",", "RTB_ROLES"),
])
def test_unusable_scale_out_settings_are_refused_by_name(name, value, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({name: value})


def part_names(settings: Settings) -> list[str]:
    return [type(part).__name__ for part in parts(settings)]


def test_each_role_starts_only_its_parts(tmp_path):
    everything = ["PrivateMariaDB", "PrivateRedis", "Kamailio", "Gunicorn", "MetricsExporter",
                  "PostbackWorker"]
    assert part_names(settings_with(tmp_path)) == everything
    assert part_names(settings_with(tmp_path, RTB_ROLES="edge")) == ["PrivateRedis", "Kamailio"]
    assert part_names(settings_with(tmp_path, RTB_ROLES="app, db")) == [
        "PrivateMariaDB", "Gunicorn", "MetricsExporter", "PostbackWorker"]
    # The private database only when no database URL is given.
    assert part_names(settings_with(tmp_path, RTB_ROLES="db,app", RTB_DATABASE_URLS=NODES)) == [
        "Gunicorn", "MetricsExporter", "PostbackWorker"]
    write_cluster(tmp_path)
    assert part_names(settings_with(tmp_path, RTB_ROLES="db,app")) == [
        "Gunicorn", "MetricsExporter", "PostbackWorker"]


def test_the_banner_of_some_roles_says_what_runs(tmp_path):
    app_only = banner(settings_with(tmp_path, RTB_ROLES="app", RTB_DATABASE_URLS=NODES,
                                    RTB_EDGES="http://127.0.0.1:5281/RPC"))
    assert "roles app" in app_only and "http://127.0.0.1:5281/RPC" in app_only
    assert "SIP edge" not in app_only and "Database" not in app_only
    edge_only = banner(settings_with(tmp_path, RTB_ROLES="edge"))
    assert "SIP edge" in edge_only and "HTTP API" not in edge_only


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch):
    """The pauses between tries are for a real failover; here they only cost time."""
    monkeypatch.setattr("app.db.FIRST_PAUSE", 0)


def db_error(code: int) -> OperationalError:
    return OperationalError("COMMIT", {}, pymysql.err.OperationalError(code, "from the server"))


@pytest.mark.parametrize("code", [1213, 1047, 1180, 2013, 2006])
def test_an_aborted_transaction_is_tried_again_until_it_goes_through(code):
    tries, rolled_back = [], []

    def work():
        tries.append(1)
        if len(tries) < 3:
            raise db_error(code)
        return "done"

    assert try_again(db_error(code))
    assert retried(work, lambda: rolled_back.append(1)) == "done"
    assert (len(tries), len(rolled_back)) == (3, 2)


@pytest.mark.parametrize("code", [1062, 2003])
def test_a_refused_statement_or_no_node_to_connect_to_is_not_tried_again(code):
    tries = []

    def work():
        tries.append(1)
        raise db_error(code)

    with pytest.raises(OperationalError):
        retried(work)
    assert len(tries) == 1


def test_tries_are_bounded():
    tries = []

    def work():
        tries.append(1)
        raise db_error(1213)

    with pytest.raises(OperationalError):
        retried(work)
    assert len(tries) == 5


def test_the_writer_goes_back_to_a_node_ahead_only_once_it_stayed_usable(monkeypatch):
    """A thawed Galera node says it is synced before it learns it was evicted."""
    writer = Writer([{"host": "127.0.0.1", "port": 1}, {"host": "127.0.0.1", "port": 2}], {})
    writer.current = 1
    usable = {0: True, 1: True}
    monkeypatch.setattr(writer, "usable", lambda index: usable[index])
    for _ in range(BACK_LOOKS - 1):
        writer.look()
    assert writer.current == 1
    usable[0] = False
    writer.look()
    usable[0] = True
    for _ in range(BACK_LOOKS - 1):
        writer.look()
    assert writer.current == 1
    writer.look()
    assert writer.current == 0
