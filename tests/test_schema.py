"""schema.sql is the contract: the models, Kamailio and kamailio -c must agree with it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import OperationalError

from app.models import Base
from app.stack.kamailio import check_config
from tests.procedures import claim

KAMAILIO_TABLE_VERSIONS = {"version": 1, "subscriber": 7, "address": 6}


def test_the_models_match_schema_sql(sessions):
    with sessions() as db:
        inspector = inspect(db.connection())
        views = set(inspector.get_view_names())
        for table in Base.metadata.sorted_tables:
            columns = {c["name"]: c for c in inspector.get_columns(table.name)}
            assert set(columns) == {c.name for c in table.columns}, table.name
            # MariaDB reports every column of a grouped view as nullable.
            for column in [] if table.name in views else table.columns:
                assert columns[column.name]["nullable"] == column.nullable, \
                    f"{table.name}.{column.name} nullability"


def test_procedures_take_a_uuid_in_the_character_set_of_reservations_uuid(sessions):
    """Another character set makes MariaDB convert the column, and scan every reservation."""
    with sessions() as db:
        column = db.scalar(text(
            "SELECT character_set_name FROM information_schema.columns WHERE table_schema = DATABASE()"
            " AND table_name = 'reservations' AND column_name = 'uuid'"))
        parameters = db.execute(text(
            "SELECT specific_name, character_set_name FROM information_schema.parameters"
            " WHERE specific_schema = DATABASE() AND parameter_name = 'p_uuid'"
            " AND parameter_mode = 'IN'")).all()
    assert parameters and all(charset == column for _, charset in parameters), parameters


def test_kamailio_finds_the_table_versions_it_checks(sessions):
    with sessions() as db:
        rows = dict(db.execute(text("SELECT table_name, table_version FROM version")).all())
    assert rows == KAMAILIO_TABLE_VERSIONS


@pytest.mark.parametrize("topology_hiding", [True, False])
def test_kamailio_cfg_passes_kamailio_c_with_these_settings(settings, database, redis,
                                                           topology_hiding):
    done = check_config(dataclasses.replace(settings, sip_topology_hiding=topology_hiding))
    assert done.returncode == 0, done.stderr
    assert f"udp: {settings.sip_addr} [{settings.sip_addr}]:{settings.sip_port}" in done.stdout


def test_the_bench_fixed_route_lives_outside_the_production_config(settings, database, redis):
    """kamailio.cfg includes bench-fixed-route.cfg only when started with FIXED_ROUTE."""
    done = check_config(settings, "-A", 'FIXED_ROUTE="sip:buyer@127.0.0.1:5090"')
    assert done.returncode == 0, done.stderr
    assert "route[FIXED_RELAY]" not in settings.kamailio_cfg.read_text()
    assert "route[FIXED_RELAY]" in (settings.kamailio_cfg.parent / "bench-fixed-route.cfg").read_text()


@pytest.mark.parametrize("statement", [
    "INSERT INTO publishers (name) VALUES ('intruder')",
    "UPDATE postback_keys SET ttl_seconds = 1",
    "UPDATE subscriber SET ha1 = 'x'",
    "INSERT INTO address (grp, ip_addr, mask, port, tag) VALUES (1, '10.0.0.1', 32, 0, 'x')",
    "UPDATE reservations SET payout = 0",
    "UPDATE reservations SET status = 'claimed'",
    "UPDATE calls SET converted = TRUE",
    "DELETE FROM reservations",
])
def test_kamailio_may_not_write_what_the_app_owns(database, statement):
    engine = create_engine(kamailio_url(database))
    with engine.connect() as kamailio, pytest.raises(OperationalError, match="denied"):
        kamailio.execute(text(statement))
    engine.dispose()


def test_kamailio_may_claim_and_record_calls_through_the_procedures(database):
    engine = create_engine(kamailio_url(database))
    with engine.connect() as kamailio:
        assert claim(kamailio, "none", 1, "c").result == "not_found"
        kamailio.execute(text("CALL rtb_call_untracked(1, 'none', 'c', 0, @open)"))
        kamailio.execute(text("CALL rtb_expire(10800)"))
        kamailio.execute(text("CALL rtb_retain(90, 1000)"))
    engine.dispose()


def kamailio_url(database):
    return database.url("kamailio")


def test_kamailios_database_password_is_in_a_private_file_not_its_command_line(kamailio, database):
    password = database.url("kamailio").password
    cmdline = Path(f"/proc/{kamailio.service.pid()}/cmdline").read_bytes().decode()
    assert "mysql://" not in cmdline and password not in cmdline
    secrets = kamailio.service.state_dir / "rtb-secrets.cfg"
    assert password in secrets.read_text()
    assert secrets.stat().st_mode & 0o777 == 0o600
