"""Every setting, read once from RTB_* environment variables."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A variable holds a value we cannot use; the message names it."""


def _port(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SettingsError(f"{name} must be a port number (1-65535), not {raw!r}")
    return int(raw)


def _count(env: dict[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, str(default))
    if not raw.isdigit() or int(raw) < minimum:
        raise SettingsError(f"{name} must be a whole number of at least {minimum}, not {raw!r}")
    return int(raw)


def _switch(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "1" if default else "0")
    if raw not in ("0", "1"):
        raise SettingsError(f"{name} must be 1 (on) or 0 (off), not {raw!r}")
    return raw == "1"


def _address(env: dict[str, str], name: str, default: str) -> str:
    raw = env.get(name, default)
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an IP address, not {raw!r}") from None
    return raw


def _urls(env: dict[str, str], name: str, schemes: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of URLs, in order; empty when unset."""
    urls = tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())
    for url in urls:
        if not url.startswith(tuple(f"{scheme}://" for scheme in schemes)):
            raise SettingsError(f"{name} must be comma-separated URLs starting "
                                f"{' or '.join(f'{s}://' for s in schemes)}, not {url!r}")
    if len(set(urls)) != len(urls):
        raise SettingsError(f"{name} names the same URL twice")
    return urls


ROLES = ("app", "edge", "db")


def _roles(env: dict[str, str]) -> frozenset[str]:
    raw = env.get("RTB_ROLES", ",".join(ROLES))
    roles = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [role for role in roles if role not in ROLES]
    if unknown or not roles:
        raise SettingsError(f"RTB_ROLES must be a comma list of {', '.join(ROLES)}, not {raw!r}")
    return frozenset(roles)


@dataclass(frozen=True)
class PingLimits:
    """What one ping and one key may use; the defaults are RTB_*'s defaults."""

    tags: int = 50
    tag_name_chars: int = 64
    tag_value_chars: int = 256
    # Pings a second for a key without a rate limit of its own.
    rate_limit: int = 100
    # Pool numbers the live reservations of one key may hold at once.
    held_numbers: int = 10
    # Milliseconds from a ping's start until its pass-through targets' bids are in.
    bid_deadline_ms: int = 500

    @classmethod
    def from_env(cls, env: dict[str, str]) -> PingLimits:
        return cls(
            tags=_count(env, "RTB_MAX_TAGS", cls.tags),
            tag_name_chars=_count(env, "RTB_MAX_TAG_NAME", cls.tag_name_chars),
            tag_value_chars=_count(env, "RTB_MAX_TAG_VALUE", cls.tag_value_chars),
            rate_limit=_count(env, "RTB_DEFAULT_RATE_LIMIT", cls.rate_limit),
            held_numbers=_count(env, "RTB_MAX_HELD_NUMBERS", cls.held_numbers),
            bid_deadline_ms=_count(env, "RTB_BID_DEADLINE_MS", cls.bid_deadline_ms),
        )


@dataclass(frozen=True)
class PostbackTimes:
    """How the postback worker sends and retries; the defaults are RTB_POSTBACK_*'s."""

    # The whole of one request: connecting, sending, the answer's status line.
    timeout_seconds: int = 10
    # The wait after a first failure; it doubles with each failure, up to an hour.
    retry_seconds: int = 30
    # How long after the call's end a postback is retried before it is given up.
    give_up_seconds: int = 86400

    @classmethod
    def from_env(cls, env: dict[str, str]) -> PostbackTimes:
        return cls(
            timeout_seconds=_count(env, "RTB_POSTBACK_TIMEOUT", cls.timeout_seconds),
            retry_seconds=_count(env, "RTB_POSTBACK_RETRY_SECONDS", cls.retry_seconds),
            give_up_seconds=_count(env, "RTB_POSTBACK_GIVE_UP_SECONDS", cls.give_up_seconds),
        )


@dataclass(frozen=True)
class Settings:
    http_host: str
    http_port: int
    http_workers: int
    sip_addr: str
    sip_port: int
    sip_domain: str
    sip_realm: str
    rpc_port: int
    db_port: int
    var_dir: Path
    database_url_override: str | None
    kamailio_database_url_override: str | None
    kamailio_cfg: Path
    sip_flood_window: int
    sip_flood_requests: int
    sip_ban_seconds: int
    sip_auth_failures: int
    sip_ip_auth_tcp_only: bool
    ping_limits: PingLimits
    sip_keepalive_seconds: int
    sip_keepalive_failures: int
    sip_reply_seconds: int
    sip_topology_hiding: bool
    retention_days: int
    http_timeout: int = 30
    sip_shared_memory_mb: int = 256
    rpc_timeout_ms: int = 500
    redis_port: int = 6380
    redis_url_override: str | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    postbacks: PostbackTimes = PostbackTimes()
    # Threads per gunicorn worker (gthread): a ping waits on its buyers' bids
    # in a thread, not a whole worker. Chosen by `make bench`'s pass-through step.
    http_threads: int = 8
    admin_secure_cookie: bool = False
    # Scale-out (docs/scale-out.md): the database nodes in writer-preference
    # order, the edges every change is pushed to, and the parts this machine runs.
    database_urls_override: tuple[str, ...] = ()
    kamailio_database_urls_override: tuple[str, ...] = ()
    edges_override: tuple[str, ...] = ()
    roles: frozenset[str] = frozenset(ROLES)
    # Added to every port of `make cluster-up`'s nodes, to run a second cluster beside one.
    cluster_port_offset: int = 0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        sip_addr = _address(env, "RTB_SIP_ADDR", "127.0.0.1")
        sip_domain = (env.get("RTB_SIP_DOMAIN") or sip_addr).lower()
        if any(c in sip_domain for c in "@;:/ ,"):
            raise SettingsError(f"RTB_SIP_DOMAIN must be a bare host name, not {sip_domain!r}")
        # Metrics are never served on the publishers' port.
        if _port(env, "RTB_METRICS_PORT", 9464) == _port(env, "RTB_HTTP_PORT", 8080):
            raise SettingsError("RTB_METRICS_PORT must differ from RTB_HTTP_PORT")
        return cls(
            http_host=_address(env, "RTB_HTTP_HOST", "127.0.0.1"),
            http_port=_port(env, "RTB_HTTP_PORT", 8080),
            http_workers=_count(env, "RTB_HTTP_WORKERS", 8),
            sip_addr=sip_addr,
            sip_port=_port(env, "RTB_SIP_PORT", 5060),
            sip_domain=sip_domain,
            sip_realm=env.get("RTB_SIP_REALM") or sip_domain,
            rpc_port=_port(env, "RTB_RPC_PORT", 5080),
            db_port=_port(env, "RTB_DB_PORT", 3307),
            var_dir=Path(env.get("RTB_VAR_DIR") or PROJECT_DIR / "var").resolve(),
            database_url_override=env.get("RTB_DATABASE_URL") or None,
            kamailio_database_url_override=env.get("RTB_KAMAILIO_DATABASE_URL") or None,
            kamailio_cfg=Path(env.get("RTB_KAMAILIO_CFG") or PROJECT_DIR / "kamailio" / "kamailio.cfg"),
            sip_flood_window=_count(env, "RTB_SIP_FLOOD_WINDOW", 2),
            sip_flood_requests=_count(env, "RTB_SIP_FLOOD_REQUESTS", 300),
            sip_ban_seconds=_count(env, "RTB_SIP_BAN_SECONDS", 300),
            sip_auth_failures=_count(env, "RTB_SIP_AUTH_FAILURES", 5),
            sip_ip_auth_tcp_only=_switch(env, "RTB_SIP_IP_AUTH_TCP_ONLY", False),
            ping_limits=PingLimits.from_env(env),
            # Kamailio's dialog module refuses keepalive intervals under 30 s.
            sip_keepalive_seconds=_count(env, "RTB_SIP_KEEPALIVE_SECONDS", 30, minimum=30),
            sip_keepalive_failures=_count(env, "RTB_SIP_KEEPALIVE_FAILURES", 1),
            sip_reply_seconds=_count(env, "RTB_SIP_REPLY_SECONDS", 10),
            sip_topology_hiding=_switch(env, "RTB_SIP_TOPOLOGY_HIDING", True),
            http_timeout=_count(env, "RTB_HTTP_TIMEOUT", 30),
            # With 128, `make bench` ran out (tm: out of mem) at 800 calls/s,
            # before the CPU did.
            sip_shared_memory_mb=_count(env, "RTB_SIP_SHARED_MEMORY_MB", 256, minimum=64),
            rpc_timeout_ms=_count(env, "RTB_RPC_TIMEOUT_MS", 500),
            # The counters' months reach 32 days back: history that young stays.
            retention_days=_count(env, "RTB_RETENTION_DAYS", 90, minimum=33),
            # topos's records: the private Redis on this port, or the operator's.
            redis_port=_port(env, "RTB_REDIS_PORT", 6380),
            redis_url_override=env.get("RTB_REDIS_URL") or None,
            metrics_host=_address(env, "RTB_METRICS_HOST", "127.0.0.1"),
            metrics_port=_port(env, "RTB_METRICS_PORT", 9464),
            postbacks=PostbackTimes.from_env(env),
            http_threads=_count(env, "RTB_HTTP_THREADS", 8),
            # On when a TLS proxy serves /admin: browsers then send the cookie over HTTPS only.
            admin_secure_cookie=_switch(env, "RTB_ADMIN_SECURE_COOKIE", False),
            database_urls_override=_urls(env, "RTB_DATABASE_URLS", ("mysql+pymysql",)),
            kamailio_database_urls_override=_urls(env, "RTB_KAMAILIO_DATABASE_URLS",
                                                  ("mysql+pymysql", "mysql")),
            edges_override=_urls(env, "RTB_EDGES", ("http",)),
            roles=_roles(env),
            cluster_port_offset=_count(env, "RTB_CLUSTER_PORT_OFFSET", 0, minimum=0),
        )

    @property
    def private_database(self) -> bool:
        """No database URL given, and no cluster under the state folder to find nodes in."""
        return (self.database_url_override is None and not self.database_urls_override
                and not self.cluster_topology_file.exists())

    @property
    def cluster_topology_file(self) -> Path:
        """What `make cluster-up` writes: the cluster's nodes and edges (app/database_urls.py)."""
        return self.var_dir / "cluster" / "topology.json"

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}/RPC"

    @property
    def metrics_dir(self) -> Path:
        """Where gunicorn's workers write their metrics (PROMETHEUS_MULTIPROC_DIR)."""
        return self.var_dir / "metrics"

    @property
    def rpc_secret_file(self) -> Path:
        """The secret Kamailio's JSON-RPC asks of every request, made once, mode 0600."""
        return self.var_dir / "rpc-secret"

    @property
    def admin_secret_file(self) -> Path:
        """The key the admin pages sign their session cookies with, made once, mode 0600."""
        return self.var_dir / "admin-secret"
