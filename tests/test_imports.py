"""Imports point one way: app/stack (the launcher) uses the app, never the reverse;
rtbctl imports only what its command uses."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.database_urls import database_url, kamailio_database_url, private_url
from app.settings import PROJECT_DIR, Settings

APP = PROJECT_DIR / "app"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_nothing_in_app_outside_app_stack_imports_app_stack():
    offenders = {
        str(path.relative_to(PROJECT_DIR)): sorted(n for n in imported_modules(path)
                                                   if n == "app.stack" or n.startswith("app.stack."))
        for path in APP.rglob("*.py") if APP / "stack" not in path.parents
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_import_check_sees_an_import_of_app_stack(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from app import stack\nfrom app.stack.mariadb import PrivateMariaDB\n")
    assert {"app.stack", "app.stack.mariadb"} <= imported_modules(module)


def settings_with(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"RTB_VAR_DIR": str(tmp_path), "RTB_DB_PORT": "3399", **env})


def test_the_private_database_url_uses_the_passwords_under_the_state_folder(tmp_path):
    (tmp_path / "mariadb").mkdir()
    (tmp_path / "mariadb" / "credentials.json").write_text(
        json.dumps({"rtb": "app-pw", "kamailio": "edge-pw"}))
    settings = settings_with(tmp_path)
    url = database_url(settings)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "rtb", "app-pw", "127.0.0.1", 3399, "rtb")
    assert kamailio_database_url(settings) == "mysql://kamailio:edge-pw@127.0.0.1:3399/rtb"
    assert private_url(settings, "kamailio").password == "edge-pw"


def test_urls_from_the_settings_win_and_kamailio_falls_back_to_the_apps(tmp_path):
    own = settings_with(tmp_path, RTB_DATABASE_URL="mysql+pymysql://app:a@db.internal:3306/calls")
    assert database_url(own).host == "db.internal"
    assert kamailio_database_url(own) == "mysql://app:a@db.internal:3306/calls"
    both = settings_with(tmp_path, RTB_DATABASE_URL="mysql+pymysql://app:a@db.internal:3306/calls",
                         RTB_KAMAILIO_DATABASE_URL="mysql://edge:e@db.internal:3306/calls")
    assert kamailio_database_url(both) == "mysql://edge:e@db.internal:3306/calls"


def test_without_a_private_database_the_error_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="run `make up` first, or set RTB_DATABASE_URL"):
        database_url(settings_with(tmp_path))


# What a command that changes the market must not load: the web app, the
# launcher, and the area code tables only pings need.
NOT_FOR_THE_CLI = ("app.api", "app.stack", "flask", "gunicorn", "phonenumbers.geocoder")

RUN_AND_LIST_MODULES = """
import json, sys
from app.cli import main
main(sys.argv[1:], standalone_mode=False)
print(json.dumps(sorted(sys.modules)))
"""


def test_adding_a_publisher_loads_neither_the_web_app_nor_the_launcher(env, database):
    done = subprocess.run([sys.executable, "-c", RUN_AND_LIST_MODULES, "publisher", "add",
                           "imports-publisher", "--json"],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=60,
                          check=True)
    out = done.stdout.splitlines()
    assert json.loads(out[0])["name"] == "imports-publisher"
    loaded = json.loads(out[1])
    assert [m for m in loaded if m.startswith(NOT_FOR_THE_CLI)] == []
