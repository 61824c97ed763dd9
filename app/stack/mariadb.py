"""The private MariaDB under the state folder, and loading schema.sql."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import shutil
import subprocess

from sqlalchemy.engine import URL, make_url

from app.settings import PROJECT_DIR, Settings
from app.stack.process import Service

DATABASE = "rtb"
SCHEMA = PROJECT_DIR / "schema.sql"

# What Kamailio may touch: read its tables and the routing views, and claim
# and record calls only through the procedures.
KAMAILIO_GRANTS = """
GRANT SELECT ON {db}.version TO {user};
GRANT SELECT ON {db}.subscriber TO {user};
GRANT SELECT ON {db}.address TO {user};
GRANT SELECT ON {db}.live_reservation_routes TO {user};
GRANT EXECUTE ON PROCEDURE {db}.rtb_confirm TO {user};
GRANT EXECUTE ON PROCEDURE {db}.rtb_call_event TO {user};
GRANT EXECUTE ON PROCEDURE {db}.rtb_expire TO {user};
GRANT EXECUTE ON PROCEDURE {db}.rtb_pstn_match TO {user};
"""


class PrivateMariaDB:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.dir = settings.var_dir / "mariadb"
        self.socket = self.dir / "mysqld.sock"
        self.credentials_file = self.dir / "credentials.json"
        root_flag = ["--user=root"] if os.geteuid() == 0 else []
        self.service = Service("mariadb", [
            shutil.which("mariadbd") or "/usr/sbin/mariadbd", "--no-defaults",
            f"--datadir={self.dir / 'data'}", f"--socket={self.socket}",
            f"--port={settings.db_port}", "--bind-address=127.0.0.1",
            "--skip-name-resolve", "--max-connections=400",
            "--innodb-buffer-pool-size=256M", f"--log-error={self.dir / 'error.log'}",
            *root_flag,
        ], self.dir)

    def start(self) -> None:
        self._install()
        self.service.start(self._ready, timeout=60)
        self._bootstrap()

    def stop(self) -> None:
        self.service.stop(timeout=60)

    def _install(self) -> None:
        if (self.dir / "data" / "mysql").is_dir():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([
            "mariadb-install-db", "--no-defaults", f"--datadir={self.dir / 'data'}",
            "--auth-root-authentication-method=socket",
            f"--auth-root-socket-user={getpass.getuser()}", "--skip-test-db",
            *(["--user=root"] if os.geteuid() == 0 else []),
        ], check=True, capture_output=True)

    def _ready(self) -> bool:
        return subprocess.run(
            ["mariadb-admin", "--no-defaults", f"--socket={self.socket}", "ping"],
            capture_output=True,
        ).returncode == 0

    def _credentials(self, create: bool = False) -> dict[str, str]:
        if create and not self.credentials_file.exists():
            self.credentials_file.touch(mode=0o600)
            self.credentials_file.write_text(json.dumps(
                {"rtb": secrets.token_hex(16), "kamailio": secrets.token_hex(16)}))
        try:
            return json.loads(self.credentials_file.read_text())
        except FileNotFoundError:
            raise RuntimeError(
                f"no private database in {self.dir}: run `make up` first, or set RTB_DATABASE_URL"
            ) from None

    def _bootstrap(self) -> None:
        """Create the database and its two users, load schema.sql, grant Kamailio."""
        creds = self._credentials(create=True)
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
        self.root_sql(SCHEMA.read_text(), database=DATABASE)
        self.root_sql(KAMAILIO_GRANTS.format(db=DATABASE, user="'kamailio'@'127.0.0.1'"))

    def _load_time_zones(self) -> None:
        """Named zones for targets' business hours and caps (CONVERT_TZ), once."""
        if self.root_sql("SELECT COUNT(*) FROM mysql.time_zone_name").strip() != "0":
            return
        zones = subprocess.run(["mariadb-tzinfo-to-sql", "/usr/share/zoneinfo"],
                               capture_output=True, text=True, check=True).stdout
        self.root_sql(zones, database="mysql")

    def root_sql(self, sql: str, database: str | None = None) -> str:
        argv = ["mariadb", "--no-defaults", f"--socket={self.socket}", "--batch", "--skip-column-names"]
        done = subprocess.run(argv + ([database] if database else []), input=sql,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb failed: {done.stderr.strip()}")
        return done.stdout

    def url(self, user: str) -> URL:
        return URL.create("mysql+pymysql", username=user, password=self._credentials()[user],
                          host="127.0.0.1", port=self.settings.db_port, database=DATABASE)


def load_schema(url: URL) -> None:
    """Load schema.sql into an existing server, for RTB_DATABASE_URL setups."""
    argv = ["mariadb", "--no-defaults", f"--host={url.host or '127.0.0.1'}",
            f"--port={url.port or 3306}", f"--user={url.username}", url.database or DATABASE]
    env = dict(os.environ, MYSQL_PWD=url.password or "")
    done = subprocess.run(argv, input=SCHEMA.read_text(), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"loading schema.sql failed: {done.stderr.strip()}")


def database_url(settings: Settings) -> URL:
    if settings.database_url_override:
        return make_url(settings.database_url_override)
    return PrivateMariaDB(settings).url("rtb")


def kamailio_database_url(settings: Settings) -> str:
    """Kamailio's db_mysql URL: its own least-privileged user on the private server."""
    if settings.kamailio_database_url_override:
        url = make_url(settings.kamailio_database_url_override)
    elif settings.database_url_override:
        url = make_url(settings.database_url_override)
    else:
        url = PrivateMariaDB(settings).url("kamailio")
    return url.set(drivername="mysql").render_as_string(hide_password=False)
