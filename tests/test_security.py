"""Nobody in who should not be: admin surfaces on loopback only, Kamailio's
database user confined to what it needs, no secret stored in the clear."""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import uuid as uuidlib
from pathlib import Path

import pymysql
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from app.kamailio_rpc import SECRET_HEADER, KamailioRPC, RPCError, rpc_secret
from app.stack.kamailio import SECRETS, run_dir
from tests.rtbctl import run_json

APP_TABLES = ["publishers", "postback_keys", "subscriber", "address", "targets", "campaigns",
              "carriers", "numbers", "reservations", "calls", "pings", "postbacks"]


def rpc_status(settings, source_ip: str, port: int | None = None, secret: str | None = None,
               method: str = "core.version", params: tuple = ()) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port or settings.rpc_port, timeout=5,
                                            source_address=(source_ip, 0))
    headers = {} if secret is None else {SECRET_HEADER: secret}
    try:
        connection.request("POST", "/RPC", headers=headers, body=json.dumps(
            {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}).encode())
        return connection.getresponse().status
    finally:
        connection.close()


def test_json_rpc_answers_only_from_127_0_0_1_and_only_on_its_port(settings, kamailio):
    secret = rpc_secret(settings.rpc_secret_file)
    assert rpc_status(settings, "127.0.0.1", secret=secret) == 200
    assert rpc_status(settings, "127.0.0.7", secret=secret) == 403
    # HTTP to the SIP port is no way in either.
    assert rpc_status(settings, "127.0.0.1", port=settings.sip_port, secret=secret) == 403


@pytest.mark.parametrize("secret", [None, "", "0" * 64], ids=["none", "empty", "wrong"])
def test_json_rpc_from_loopback_without_the_secret_is_403(settings, kamailio, secret):
    assert rpc_status(settings, "127.0.0.1", secret=secret, method="htable.dump",
                      params=("rsv",)) == 403
    assert rpc_status(settings, "127.0.0.1", secret=rpc_secret(settings.rpc_secret_file),
                      method="htable.dump", params=("rsv",)) == 200


def test_the_rpc_client_with_a_wrong_secret_is_told_403(settings, kamailio, tmp_path):
    wrong = KamailioRPC(settings.rpc_url, tmp_path / "another-secret", timeout=2)
    with pytest.raises(RPCError, match="HTTP 403"):
        wrong.call("core.version")
    assert KamailioRPC.for_settings(settings, timeout=2).call("core.version")


def test_the_json_rpc_secret_is_made_once_and_readable_by_its_owner_alone(settings, kamailio):
    secret = rpc_secret(settings.rpc_secret_file)
    assert len(secret) == 64 and rpc_secret(settings.rpc_secret_file) == secret
    for path in (settings.rpc_secret_file, run_dir(settings) / SECRETS):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert secret in (run_dir(settings) / SECRETS).read_text()


def listening_addresses(pid: int) -> set[str]:
    """The local addresses of the sockets a process holds that listen (TCP) or are bound (UDP)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, listening in (("tcp", "0A"), ("udp", "07")):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes and fields[3] == listening:
                found.add(socket.inet_ntoa(bytes.fromhex(fields[1].split(":")[0])[::-1]))
    return found


def test_kamailio_and_mariadb_listen_on_loopback_only(kamailio, database):
    for service in (kamailio.service, database.service):
        addresses = listening_addresses(service.pid())
        assert addresses and all(a.startswith("127.") for a in addresses), (service.name, addresses)


def test_the_private_mariadb_has_no_root_over_the_network(database, settings):
    for password in ("", "root"):
        with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
            pymysql.connect(host="127.0.0.1", port=settings.db_port, user="root", password=password)
    hosts = database.root_sql("SELECT DISTINCT Host FROM mysql.global_priv").split()
    assert set(hosts) <= {"localhost", "127.0.0.1"}, hosts


@pytest.mark.parametrize("statement", [
    *(f"INSERT INTO {table} SELECT * FROM {table} WHERE FALSE" for table in APP_TABLES),
    *(f"UPDATE {table} SET created_at = created_at" for table in APP_TABLES
      if table not in ("subscriber", "address", "calls")),
    "UPDATE subscriber SET ha1 = ha1", "UPDATE address SET tag = tag",
    "UPDATE calls SET ended_at = ended_at",
    *(f"DELETE FROM {table}" for table in APP_TABLES),
    "SELECT key_hash FROM postback_keys", "SELECT name FROM publishers",
    "SELECT postback_secret FROM postback_keys",
])
def test_kamailios_database_user_may_not_touch_what_it_does_not_need(database, statement):
    engine = create_engine(database.url("kamailio"))
    try:
        with engine.connect() as kamailio, pytest.raises((OperationalError, ProgrammingError),
                                                         match="denied"):
            kamailio.execute(text(statement))
    finally:
        engine.dispose()


def test_keys_and_sip_passwords_are_nowhere_in_the_database_in_the_clear(env, kamailio, sessions):
    def rtbctl(*args: str, stdin: str | None = None) -> dict:
        return run_json(env, *args, stdin=stdin)

    suffix = uuidlib.uuid4().hex[:8]
    publisher = str(rtbctl("publisher", "add", f"secret-{suffix}")["id"])
    campaign = str(rtbctl("campaign", "add", f"secret-{suffix}")["id"])
    key = rtbctl("key", "add", campaign, publisher)["key"]
    password = f"pw-{uuidlib.uuid4().hex}"
    rtbctl("publisher", "sip-user", publisher, f"user-{suffix}", "--password-stdin",
           stdin=f"{password}\n")
    with sessions() as db:
        columns = db.execute(text(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = DATABASE() AND data_type IN"
            " ('char', 'varchar', 'text', 'mediumtext', 'longtext', 'json', 'blob', 'varbinary')"
            " AND table_name IN (SELECT table_name FROM information_schema.tables"
            "  WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE')")).all()
        assert ("postback_keys", "key_hash") in columns and ("subscriber", "ha1") in columns
        for secret in (key, password):
            assert len(secret) > 16
            found = [(t, c) for t, c in columns if db.scalar(text(
                f"SELECT COUNT(*) FROM `{t}` WHERE INSTR(`{c}`, :secret) > 0"), {"secret": secret})]
            assert found == [], found
