"""What the launcher writes for kamailio.cfg's import_file: one database URL
as always, several behind db_cluster, in their order."""

from __future__ import annotations

import pytest

from app.settings import Settings
from app.stack.kamailio import DB_CLUSTER, write_secrets


def settings_for(tmp_path, **env: str) -> Settings:
    return Settings.from_env({"RTB_VAR_DIR": str(tmp_path), **env})


def test_one_database_url_is_kamailios_own_with_no_cluster(tmp_path):
    settings = settings_for(tmp_path, RTB_KAMAILIO_DATABASE_URL="mysql+pymysql://k:pw@10.0.0.1:3306/rtb",
                            RTB_SIP_TOPOLOGY_HIDING="0")
    secrets = write_secrets(settings).read_text()
    assert secrets.startswith('#!define DBURL "mysql://k:pw@10.0.0.1:3306/rtb"\n'
                              '#!define SQLCON "db=>mysql://k:pw@10.0.0.1:3306/rtb"\n'
                              '#!define RPC_SECRET "')
    assert "WITH_DB_CLUSTER" not in secrets
    assert not (tmp_path / "kamailio" / DB_CLUSTER).exists()


def test_several_database_urls_go_behind_db_cluster_in_their_order(tmp_path):
    urls = "mysql+pymysql://k:a@10.0.0.1:3306/rtb, mysql://k:b@10.0.0.2:3306/rtb,mysql://k:c@10.0.0.3/rtb"
    settings = settings_for(tmp_path, RTB_KAMAILIO_DATABASE_URLS=urls, RTB_SIP_TOPOLOGY_HIDING="0")
    secrets = write_secrets(settings).read_text()
    assert '#!define WITH_DB_CLUSTER\n#!define DBURL "cluster://rtb"\n' in secrets
    assert "10.0.0." not in secrets
    cluster = tmp_path / "kamailio" / DB_CLUSTER
    assert cluster.stat().st_mode & 0o777 == 0o600
    assert cluster.read_text().splitlines() == [
        'modparam("db_cluster", "connection", "node1=>mysql://k:a@10.0.0.1:3306/rtb")',
        'modparam("db_cluster", "connection", "node2=>mysql://k:b@10.0.0.2:3306/rtb")',
        'modparam("db_cluster", "connection", "node3=>mysql://k:c@10.0.0.3/rtb")',
        'modparam("db_cluster", "cluster", "rtb=>node1=9s9s;node2=8s8s;node3=7s7s")',
    ]
    # Back to one URL: the nodes' file, with their passwords, goes.
    write_secrets(settings_for(tmp_path, RTB_KAMAILIO_DATABASE_URL="mysql://k:a@10.0.0.1/rtb",
                               RTB_SIP_TOPOLOGY_HIDING="0"))
    assert not cluster.exists()


def test_more_database_nodes_than_db_cluster_has_priorities_are_refused(tmp_path):
    urls = ",".join(f"mysql://k:p@10.0.0.{i}/rtb" for i in range(1, 11))
    with pytest.raises(RuntimeError, match="at most 9"):
        write_secrets(settings_for(tmp_path, RTB_KAMAILIO_DATABASE_URLS=urls, RTB_SIP_TOPOLOGY_HIDING="0"))
