"""The private Redis under the state folder that holds topos's records, and
the ndb_redis server string Kamailio reaches it (or the operator's) with."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from app.settings import Settings, SettingsError
from app.stack.process import Service


def private_dir(settings: Settings) -> Path:
    return settings.var_dir / "redis"


def password_file(settings: Settings) -> Path:
    return private_dir(settings) / "password"


def private_url(settings: Settings, db: int = 0) -> str:
    try:
        password = password_file(settings).read_text().strip()
    except FileNotFoundError:
        raise RuntimeError(f"no private Redis in {private_dir(settings)}: run `make up` first, "
                           "or set RTB_REDIS_URL") from None
    return f"redis://:{password}@127.0.0.1:{settings.redis_port}/{db}"


def redis_url(settings: Settings) -> str:
    return settings.redis_url_override or private_url(settings)


def ndb_server(url: str, name: str = "topos") -> str:
    """ndb_redis's server modparam for redis://[:password@]host[:port][/db]."""
    parts = urlsplit(url)
    db = parts.path.lstrip("/") or "0"
    if parts.scheme != "redis" or not parts.hostname or not db.isdigit():
        raise SettingsError(f"RTB_REDIS_URL must look like redis://:password@host:port/db, not {url!r}")
    password = parts.password or ""
    if any(c in password for c in ';"\n'):
        raise SettingsError("RTB_REDIS_URL's password may not hold ; \" or a newline")
    auth = f";pass={password}" if password else ""
    return f"name={name};addr={parts.hostname};port={parts.port or 6379};db={db}{auth}"


class PrivateRedis:
    """redis-server on 127.0.0.1 alone, with a password, keeping nothing on disk:
    its records outlive a Kamailio restart, not its own."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.dir = private_dir(settings)
        self.config = self.dir / "redis.conf"
        self.service = Service("redis", [
            shutil.which("redis-server") or "/usr/bin/redis-server", str(self.config),
        ], self.dir, cwd=self.dir)

    def start(self) -> None:
        self._configure()
        self.service.start(self._ready, timeout=30)

    def stop(self) -> None:
        self.service.stop()

    def _configure(self) -> None:
        """The password, made once; the config, which holds it, written each start (0600)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        secret = password_file(self.settings)
        if not secret.exists():
            secret.touch(mode=0o600)
            secret.write_text(secrets.token_hex(16))
        self.config.touch(mode=0o600)
        self.config.chmod(0o600)
        self.config.write_text(
            f"bind 127.0.0.1\nport {self.settings.redis_port}\nprotected-mode yes\n"
            f"requirepass {secret.read_text().strip()}\nsave \"\"\nappendonly no\n"
            f"dir {self.dir}\ndaemonize no\n")

    def _ready(self) -> bool:
        return self.cli("ping").strip() == "PONG"

    def cli(self, *args: str, db: int = 0) -> str:
        """redis-cli's output for args; the password goes in its environment, not its argv."""
        return subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.settings.redis_port), "-n", str(db),
             *args], capture_output=True, text=True,
            env={**os.environ, "REDISCLI_AUTH": password_file(self.settings).read_text().strip()},
        ).stdout


def redis_parts(settings: Settings) -> list[PrivateRedis]:
    """The private Redis when topos needs one and no operator's is set, else none."""
    if settings.sip_topology_hiding and settings.redis_url_override is None:
        return [PrivateRedis(settings)]
    return []
