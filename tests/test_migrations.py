"""Upgrades in place: a database made by an earlier release, upgraded through
every revision, is the database schema.sql builds, and keeps its data.

When the comparison fails, schema.sql changed a table or an index without a
revision: `.venv/bin/python -m app.migrations "what changes"` makes one in
app/migrations/versions/; write its SQL there (README: "Changing the schema").
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from app import migrations
from app.cli import main
from app.settings import PROJECT_DIR

# The previous release, the last made without Alembic; and one from before
# the index changes that revision 0002 catches up with.
RELEASES = {"previous-release": "a235b76", "before-the-last-index-changes": "7f88d23"}

# What each part of a schema is, one row per line; {db} is the database's name.
DESCRIBE = {
    "tables": "SELECT table_name, table_type, engine, table_collation FROM information_schema.tables"
              " WHERE table_schema = '{db}' AND table_name <> 'alembic_version'",
    "columns": "SELECT table_name, column_name, column_type, is_nullable,"
               " IFNULL(column_default, '(no default)'), IFNULL(collation_name, ''), extra,"
               " IFNULL(generation_expression, '')"
               " FROM information_schema.columns"
               " WHERE table_schema = '{db}' AND table_name <> 'alembic_version'",
    "indexes": "SELECT table_name, index_name, non_unique, index_type, GROUP_CONCAT(column_name,"
               " IFNULL(CONCAT('(', sub_part, ')'), '') ORDER BY seq_in_index)"
               " FROM information_schema.statistics"
               " WHERE table_schema = '{db}' AND table_name <> 'alembic_version'"
               " GROUP BY table_name, index_name, non_unique, index_type",
    "constraints": "SELECT c.table_name, c.constraint_name, c.constraint_type,"
                   " IFNULL(k.check_clause, ''), IFNULL(r.referenced_table_name, ''),"
                   " IFNULL(r.update_rule, ''), IFNULL(r.delete_rule, '')"
                   " FROM information_schema.table_constraints c"
                   " LEFT JOIN information_schema.check_constraints k"
                   "   ON k.constraint_schema = c.table_schema AND k.table_name = c.table_name"
                   "   AND k.constraint_name = c.constraint_name"
                   " LEFT JOIN information_schema.referential_constraints r"
                   "   ON r.constraint_schema = c.table_schema AND r.table_name = c.table_name"
                   "   AND r.constraint_name = c.constraint_name"
                   " WHERE c.table_schema = '{db}' AND c.table_name <> 'alembic_version'",
    "foreign key columns": "SELECT table_name, constraint_name, column_name,"
                           " referenced_table_name, referenced_column_name"
                           " FROM information_schema.key_column_usage"
                           " WHERE table_schema = '{db}' AND referenced_table_name IS NOT NULL",
    "views": "SELECT table_name, REPLACE(view_definition, '`{db}`.', ''), check_option,"
             " security_type FROM information_schema.views WHERE table_schema = '{db}'",
    "routines": "SELECT routine_type, routine_name, IFNULL(dtd_identifier, ''), sql_data_access,"
                " is_deterministic, security_type, routine_definition"
                " FROM information_schema.routines WHERE routine_schema = '{db}'",
    "parameters": "SELECT specific_name, ordinal_position, IFNULL(parameter_mode, 'RETURNS'),"
                  " IFNULL(parameter_name, ''), dtd_identifier, IFNULL(character_set_name, '')"
                  " FROM information_schema.parameters WHERE specific_schema = '{db}'",
    "triggers": "SELECT trigger_name, event_manipulation, event_object_table, action_timing,"
                " action_statement FROM information_schema.triggers WHERE trigger_schema = '{db}'",
    "table grants": "SELECT user, host, table_name, table_priv, column_priv FROM mysql.tables_priv"
                    " WHERE db = '{db}'",
    "column grants": "SELECT user, host, table_name, column_name, column_priv"
                     " FROM mysql.columns_priv WHERE db = '{db}'",
    "routine grants": "SELECT user, host, routine_type, routine_name, proc_priv"
                      " FROM mysql.procs_priv WHERE db = '{db}'",
    "Kamailio table versions": "SELECT table_name, table_version FROM `{db}`.version",
}


# The parts whose rows start with their table's name.
OF_A_TABLE = {"columns", "indexes", "constraints", "foreign key columns", "table grants",
              "column grants"}


def describe(database, name: str) -> dict[str, set[str]]:
    return {part: {row.replace("\t", " | ") for row in database.root_sql(sql.format(db=name)).splitlines()}
            for part, sql in DESCRIBE.items()}


def differences(built: dict[str, set[str]], upgraded: dict[str, set[str]]) -> list[str]:
    """What sets the two apart, one line each, readable in a failed test. A table
    only one side has is one line: its columns and indexes are left out."""
    lone = {row.split(" | ")[0] for row in built["tables"] ^ upgraded["tables"]}
    lines = []
    for part in built:
        for side, rows in (("only schema.sql builds", built[part] - upgraded[part]),
                           ("only the upgrade has  ", upgraded[part] - built[part])):
            lines += [f"{part}: {side}  {row}" for row in sorted(rows)
                      if part not in OF_A_TABLE or row.split(" | ")[0] not in lone]
    return lines


def released_schema(commit: str) -> str:
    done = subprocess.run(["git", "show", f"{commit}:schema.sql"], cwd=PROJECT_DIR,
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"git show {commit}:schema.sql failed (a clone without that history?): "
                    f"{done.stderr.strip()}")
    return done.stdout


@pytest.fixture
def new_database(database):
    """make(label): an empty database the app's user owns, as the private stack makes
    its own; the name and an engine for it. Each is dropped after the test."""
    made = []

    def make(label: str):
        name = f"rtb_{label}_{uuid.uuid4().hex[:8]}"
        database.root_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4;"
                          f"GRANT ALL ON {name}.* TO 'rtb'@'127.0.0.1';")
        engine = create_engine(database.url("rtb").set(database=name), poolclass=NullPool)
        made.append((name, engine))
        return name, engine

    yield make
    for name, engine in made:
        engine.dispose()
        database.root_sql(f"DROP DATABASE {name}; REVOKE ALL ON {name}.* FROM 'rtb'@'127.0.0.1';")


def upgrade_and_grant(database, name: str, engine) -> str:
    """What `make up` does to a database: upgrade it, then run grants.sql."""
    reached = migrations.upgrade(engine)
    database.root_sql(migrations.GRANTS.read_text(), database=name)
    return reached


def released_database(database, new_database, commit: str):
    """A database as that release left it: its schema.sql loaded by the `mariadb` client."""
    name, engine = new_database(commit)
    database.root_sql(released_schema(commit), database=name)
    return name, engine


@pytest.mark.parametrize("commit", RELEASES.values(), ids=RELEASES.keys())
def test_an_earlier_release_upgraded_through_every_revision_is_what_schema_sql_builds(
        database, new_database, commit):
    built, built_engine = new_database("built")
    upgraded, upgraded_engine = released_database(database, new_database, commit)
    assert upgrade_and_grant(database, built, built_engine) == migrations.head()
    assert upgrade_and_grant(database, upgraded, upgraded_engine) == migrations.head()
    found = differences(describe(database, built), describe(database, upgraded))
    assert not found, ("schema.sql and the upgraded database differ; a change to a table or an"
                       " index needs a revision (python -m app.migrations 'what changes'):\n"
                       + "\n".join(found))


def test_the_comparison_names_an_index_schema_sql_has_and_the_upgrade_lacks(database, new_database):
    name, engine = new_database("drifted")
    upgrade_and_grant(database, name, engine)
    before = describe(database, name)
    database.root_sql("CREATE INDEX drift_idx ON publishers (created_at)", database=name)
    found = differences(describe(database, name), before)
    assert any("indexes: only schema.sql builds" in line and "drift_idx" in line for line in found)


# Rows of every kind an operator has, in the columns every release since 7f88d23 has.
DATA = """
INSERT INTO publishers (id, name) VALUES (1, 'kept-publisher');
INSERT INTO campaigns (id, name, fallback_sip_uri) VALUES (1, 'kept-campaign', 'sip:fb@127.0.0.1:9');
INSERT INTO targets (id, campaign_id, sip_uri, payout, min_seconds, daily_cap, timezone, states)
  VALUES (1, 1, 'sip:buyer@127.0.0.1:9', 12.50, 60, 5, 'America/New_York', 'CA,NY');
INSERT INTO postback_keys (id, key_hash, key_prefix, campaign_id, publisher_id, rate_limit)
  VALUES (1, REPEAT('a', 64), 'aaaaaaaa', 1, 1, 10);
INSERT INTO reservations (id, uuid, key_id, publisher_id, campaign_id, target_id, caller_number,
  payout, min_seconds, tags, status, expires_at, confirmed_at) VALUES
  (1, UUID(), 1, 1, 1, 1, '+12025550123', 12.50, 60, '{"state": "CA"}', 'completed',
   NOW() - INTERVAL 1 HOUR, NOW() - INTERVAL 2 HOUR),
  (2, UUID(), 1, 1, 1, 1, NULL, 12.50, 60, '{}', 'reserved', NOW() + INTERVAL 1 MINUTE, NULL);
INSERT INTO calls (reservation_id, target_id, call_id, source, answered_at, ended_at,
  talk_seconds, final_status, converted) VALUES
  (1, 1, 'kept-call@127.0.0.1', '127.0.0.2', NOW(3) - INTERVAL 2 HOUR,
   NOW(3) - INTERVAL 1 HOUR, 3600, 200, TRUE);
INSERT INTO numbers (number, campaign_id) VALUES ('+18005550100', 1);
INSERT INTO pings (key_id, outcome, reservation_id, duration_ms) VALUES (1, 'reserved', 2, 1.5);
INSERT INTO subscriber (username, domain, ha1, publisher_id) VALUES ('kept', 'sip.rtb.test', MD5('x'), 1);
INSERT INTO address (grp, ip_addr, mask, tag) VALUES (1, '127.0.0.2', 32, 'publisher:1');
"""


def contents(database, name: str, columns: dict[str, str]) -> dict[str, set[str]]:
    return {table: set(database.root_sql(f"SELECT {cols} FROM {table}", database=name).splitlines())
            for table, cols in columns.items()}


@pytest.mark.parametrize("commit", RELEASES.values(), ids=RELEASES.keys())
def test_an_upgrade_keeps_every_row_of_an_earlier_release(database, new_database, commit):
    name, engine = released_database(database, new_database, commit)
    database.root_sql(DATA, database=name)
    columns = dict(line.split("\t") for line in database.root_sql(
        "SELECT table_name, GROUP_CONCAT(column_name ORDER BY ordinal_position)"
        f" FROM information_schema.columns WHERE table_schema = '{name}'"
        " AND table_name IN (SELECT table_name FROM information_schema.tables"
        f"   WHERE table_schema = '{name}' AND table_type = 'BASE TABLE') GROUP BY table_name"
    ).splitlines())
    before = contents(database, name, columns)
    assert all(before[table] for table in ("publishers", "targets", "reservations", "calls"))
    upgrade_and_grant(database, name, engine)
    after = contents(database, name, columns)
    # A revision may add rows (Kamailio's `version`), never lose one.
    lost = {table: rows - after[table] for table, rows in before.items() if rows - after[table]}
    assert not lost


def test_a_new_database_is_built_from_schema_sql_at_the_newest_revision(new_database):
    _, engine = new_database("new")
    assert migrations.current(engine) is None
    assert migrations.upgrade(engine) == migrations.head()
    assert migrations.current(engine) == migrations.head()


def test_a_database_from_a_newer_version_is_refused_with_its_revision(new_database):
    _, engine = new_database("newer")
    migrations.upgrade(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(RuntimeError, match="cannot be upgraded.*9999"):
        migrations.upgrade(engine)


def test_kamailios_user_keeps_no_right_of_its_own_beside_the_role_of_grants_sql(database):
    user = "'kamailio'@'127.0.0.1'"
    # As a release before grants.sql granted it, straight to the user.
    database.root_sql(f"GRANT SELECT ON rtb.address TO {user}")
    database.grant_edge(user)
    grants = database.root_sql(f"SHOW GRANTS FOR {user}").splitlines()
    assert f"GRANT `{migrations.edge_role()}` TO `kamailio`@`127.0.0.1`" in grants
    assert not [line for line in grants if " ON `rtb`." in line], grants


def test_rtbctl_db_current_names_the_databases_revision_and_this_versions_head(env, database):
    done = CliRunner().invoke(main, ["db", "current", "--json"], env=env)
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == {"revision": migrations.head(), "head": migrations.head()}


def test_schema_sql_splits_into_its_statements_with_their_delimiters():
    found = migrations.statements(
        "-- a comment\nCREATE TABLE t (x INT);\n\nDELIMITER //\n"
        "CREATE OR REPLACE PROCEDURE p()\nBEGIN\n  SELECT 1;\nEND //\nDELIMITER ;\nSELECT 2;\n")
    assert found == ["CREATE TABLE t (x INT)", "CREATE OR REPLACE PROCEDURE p()\nBEGIN\n  SELECT 1;\nEND",
                     "SELECT 2"]


def test_a_statement_left_without_its_delimiter_is_an_error():
    with pytest.raises(ValueError, match="without"):
        migrations.statements("CREATE TABLE t (x INT)\n")
