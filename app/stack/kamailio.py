"""Kamailio with kamailio/kamailio.cfg, its tunables set from the settings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from app.database_urls import kamailio_database_url
from app.kamailio_rpc import KamailioRPC, RPCError, rpc_secret
from app.settings import Settings
from app.stack.redis import ndb_server, redis_url
from app.stack.process import Service

SECRETS = "rtb-secrets.cfg"


def defines(settings: Settings) -> list[str]:
    values = {
        "SIP_ADDR": settings.sip_addr,
        "SIP_PORT": str(settings.sip_port),
        "SIP_DOMAIN": f'"{settings.sip_domain}"',
        "SIP_REALM": f'"{settings.sip_realm}"',
        "RPC_PORT": str(settings.rpc_port),
        "FLOOD_WINDOW": str(settings.sip_flood_window),
        "FLOOD_REQUESTS": str(settings.sip_flood_requests),
        "BAN_SECONDS": str(settings.sip_ban_seconds),
        "AUTH_FAILURES": str(settings.sip_auth_failures),
        "IP_AUTH_TCP_ONLY": str(int(settings.sip_ip_auth_tcp_only)),
        "KEEPALIVE_SECONDS": str(settings.sip_keepalive_seconds),
        "KEEPALIVE_FAILURES": str(settings.sip_keepalive_failures),
        "REPLY_MS": str(settings.sip_reply_seconds * 1000),
        "RETENTION_DAYS": str(settings.retention_days),
    }
    switches = ["-A", "WITH_TOPOS"] if settings.sip_topology_hiding else []
    return [arg for name, value in values.items() for arg in ("-A", f"{name}={value}")] + switches


def run_dir(settings: Settings) -> Path:
    return settings.var_dir / "kamailio"


def write_secrets(settings: Settings) -> Path:
    """The database URL, the JSON-RPC secret and, with topos, the Redis server
    (with its password) for kamailio.cfg's import_file, readable by us alone."""
    url = kamailio_database_url(settings)
    if '"' in url or "\n" in url:
        raise RuntimeError("Kamailio's database URL may not hold a double quote or a newline")
    redis = (f'#!define TOPOS_REDIS "{ndb_server(redis_url(settings))}"\n'
             if settings.sip_topology_hiding else "")
    path = run_dir(settings) / SECRETS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(f'#!define DBURL "{url}"\n#!define SQLCON "db=>{url}"\n'
                    f'#!define RPC_SECRET "{rpc_secret(settings.rpc_secret_file)}"\n{redis}')
    return path


def argv(settings: Settings, *extra: str) -> list[str]:
    return [
        shutil.which("kamailio") or "/usr/sbin/kamailio", "-f", str(settings.kamailio_cfg),
        "-Y", str(run_dir(settings)), "-w", str(run_dir(settings)), "-m", str(settings.sip_shared_memory_mb), "-M", "16",
        *defines(settings), *extra,
    ]


def check_config(settings: Settings, *extra: str) -> subprocess.CompletedProcess:
    """kamailio -c; extra: more arguments, e.g. the bench's -A FIXED_ROUTE=…"""
    write_secrets(settings)
    return subprocess.run(argv(settings, *extra, "-c"), capture_output=True, text=True,
                          cwd=run_dir(settings))


class Kamailio:
    """extra: more kamailio arguments, e.g. ("-A", 'FIXED_ROUTE="sip:…"') for the benchmark."""

    def __init__(self, settings: Settings, extra: tuple[str, ...] = ()):
        self.settings = settings
        self.rpc = KamailioRPC.for_settings(settings, timeout=1.0)
        self.service = Service("kamailio", argv(settings, "-DD", "-E", *extra), run_dir(settings),
                               cwd=run_dir(settings))

    def _ready(self) -> bool:
        try:
            self.rpc.call("core.version")
        except RPCError:
            return False
        return True

    def start(self) -> None:
        # Written now: the private database's credentials exist once it is up.
        write_secrets(self.settings)
        self.service.start(self._ready, timeout=30)

    def stop(self) -> None:
        self.service.stop()
