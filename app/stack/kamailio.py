"""Kamailio with kamailio/kamailio.cfg, its tunables set from the settings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


from app.database_urls import kamailio_database_urls
from app.kamailio_rpc import KamailioRPC, RPCError, rpc_secret
from app.settings import Settings
from app.stack.redis import ndb_server, redis_url
from app.stack.process import Service

SECRETS = "rtb-secrets.cfg"
# db_cluster's connections, with their passwords: written only for several nodes.
DB_CLUSTER = "rtb-db-cluster.cfg"
# db_cluster tries its connections by priority, 9 down to 1: one node each.
MAX_DB_NODES = 9


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


def _private_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def db_cluster_params(urls: list[str]) -> str:
    """db_cluster's modparams for kamailio.cfg's WITH_DB_CLUSTER: node i has
    priority 10 - i, serial ("s") for reads and writes, so every query goes
    to the first node that answers."""
    if len(urls) > MAX_DB_NODES:
        raise RuntimeError(f"Kamailio takes at most {MAX_DB_NODES} database URLs, not {len(urls)}")
    names = [f"node{i}" for i in range(1, len(urls) + 1)]
    connections = "".join(f'modparam("db_cluster", "connection", "{name}=>{url}")\n'
                          for name, url in zip(names, urls))
    nodes = ";".join(f"{name}={10 - i}s{10 - i}s" for i, name in enumerate(names, 1))
    return f'{connections}modparam("db_cluster", "cluster", "rtb=>{nodes}")\n'


def write_secrets(settings: Settings) -> Path:
    """The database URL (db_cluster's, with its nodes in a file of their own,
    for several), the JSON-RPC secret and, with topos, the Redis server (with
    its password) for kamailio.cfg's import_file, readable by us alone."""
    urls = kamailio_database_urls(settings)
    if any('"' in url or "\n" in url for url in urls):
        raise RuntimeError("Kamailio's database URL may not hold a double quote or a newline")
    redis = (f'#!define TOPOS_REDIS "{ndb_server(redis_url(settings))}"\n'
             if settings.sip_topology_hiding else "")
    cluster = run_dir(settings) / DB_CLUSTER
    if len(urls) > 1:
        _private_file(cluster, db_cluster_params(urls))
        database = '#!define WITH_DB_CLUSTER\n#!define DBURL "cluster://rtb"\n#!define SQLCON "db=>cluster://rtb"\n'
    else:
        cluster.unlink(missing_ok=True)
        database = f'#!define DBURL "{urls[0]}"\n#!define SQLCON "db=>{urls[0]}"\n'
    path = run_dir(settings) / SECRETS
    _private_file(path, f'{database}#!define RPC_SECRET "{rpc_secret(settings.rpc_secret_file)}"\n{redis}')
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
