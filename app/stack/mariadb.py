"""The private MariaDB under the state folder, and upgrading a database's schema."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from app import migrations
from app.database_urls import DATABASE, credentials_file, private_dir
from app.settings import Settings
from app.stack.process import Service


class PrivateMariaDB:
    """A mariadbd of our own under the state folder. dir, port and credentials
    default to the private server's; a Galera node (app/stack/galera.py) has
    its own."""

    name = "mariadb"
    # Who mariadbd runs as when started by root; None runs it as whoever starts it.
    root_runs_as = "root"

    def __init__(self, settings: Settings, dir: Path | None = None, port: int | None = None,
                 credentials: Path | None = None):
        self.settings = settings
        self.dir = dir or private_dir(settings)
        self.port = port or settings.db_port
        self.socket = self.dir / "mysqld.sock"
        self.credentials_file = credentials or credentials_file(settings)
        self.service = Service(self.name, [
            shutil.which("mariadbd") or "/usr/sbin/mariadbd", "--no-defaults",
            f"--datadir={self.dir / 'data'}", f"--socket={self.socket}",
            f"--port={self.port}", "--bind-address=127.0.0.1",
            "--skip-name-resolve", "--max-connections=400",
            "--innodb-buffer-pool-size=256M", f"--log-error={self.dir / 'error.log'}",
            # Every deadlock goes to the error log, not only the latest.
            "--innodb-print-all-deadlocks=ON",
            *self._user_flag(), *self.server_options(),
        # mariadbd sets its own umask (0660) from UMASK: keep its files, the
        # error log among them, to their owner.
        ], self.dir, env={**os.environ, "UMASK": "0600", "UMASK_DIR": "0700"})

    def server_options(self) -> list[str]:
        """More mariadbd options, after the common ones."""
        return []

    def _user_flag(self) -> list[str]:
        return [f"--user={self.root_runs_as}"] if os.geteuid() == 0 else []

    def start(self) -> None:
        self._install()
        self.service.start(self._ready, timeout=60)
        self.bootstrap()

    def stop(self) -> None:
        self.service.stop(timeout=60)

    def _install(self) -> None:
        if (self.dir / "data" / "mysql").is_dir():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([
            "mariadb-install-db", "--no-defaults", f"--datadir={self.dir / 'data'}",
            "--auth-root-authentication-method=socket",
            f"--auth-root-socket-user={getpass.getuser()}", "--skip-test-db",
            *self._user_flag(),
        ], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {(done.stdout + done.stderr)[-2000:]}")

    def _ready(self) -> bool:
        return subprocess.run(
            ["mariadb-admin", "--no-defaults", f"--socket={self.socket}", "ping"],
            capture_output=True,
        ).returncode == 0

    def _credentials(self) -> dict[str, str]:
        """The two users' passwords, made on the first start and kept."""
        if not self.credentials_file.exists():
            self.credentials_file.touch(mode=0o600)
            self.credentials_file.write_text(json.dumps(
                {"rtb": secrets.token_hex(16), "kamailio": secrets.token_hex(16)}))
        return json.loads(self.credentials_file.read_text())

    def bootstrap(self) -> None:
        """Create the database and its two users, upgrade it, grant Kamailio grants.sql's role."""
        creds = self._credentials()
        users = "".join(
            f"CREATE USER IF NOT EXISTS '{name}'@'127.0.0.1' IDENTIFIED BY '{pw}';"
            f"ALTER USER '{name}'@'127.0.0.1' IDENTIFIED BY '{pw}';"
            for name, pw in creds.items()
        )
        self.root_sql(
            f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4;{users}"
            f"GRANT ALL ON {DATABASE}.* TO 'rtb'@'127.0.0.1';"
        )
        self._load_time_zones()
        upgrade_schema(self.url("rtb"))
        self.grant_edge("'kamailio'@'127.0.0.1'")

    def grant_edge(self, user: str, database: str = DATABASE) -> None:
        """What an operator does for Kamailio's user: grants.sql, then its role as the
        default. The user holds the role alone: what a release before grants.sql
        granted it directly is taken back."""
        self.root_sql(migrations.GRANTS.read_text(), database=database)
        role = migrations.edge_role()
        self.root_sql(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {user};"
                      f"GRANT {role} TO {user}; SET DEFAULT ROLE {role} FOR {user};")

    def _load_time_zones(self) -> None:
        """Named zones for targets' business hours and caps (CONVERT_TZ), once."""
        if self.root_sql("SELECT COUNT(*) FROM mysql.time_zone_name").strip() != "0":
            return
        zones = subprocess.run(["mariadb-tzinfo-to-sql", "/usr/share/zoneinfo"],
                               capture_output=True, text=True, check=True).stdout
        self.root_sql(zones, database="mysql")

    def root_sql(self, sql: str, database: str | None = None, timeout: float | None = None) -> str:
        """sql's output as root; timeout: seconds before subprocess.TimeoutExpired."""
        argv = ["mariadb", "--no-defaults", f"--socket={self.socket}", "--batch", "--skip-column-names"]
        done = subprocess.run(argv + ([database] if database else []), input=sql,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb failed: {done.stderr.strip()}")
        return done.stdout

    def url(self, user: str) -> URL:
        return URL.create("mysql+pymysql", username=user, password=self._credentials()[user],
                          host="127.0.0.1", port=self.port, database=DATABASE)


def upgrade_schema(url: URL) -> None:
    """Build or upgrade the schema of the database at url, before anything uses it."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        migrations.upgrade(engine)
    finally:
        engine.dispose()

