"""The demo's environment: `make run`'s, moved aside.

Its state lives in $RTB_VAR_DIR/demo and its parts listen on ports of their
own (RTB_DEMO_HTTP_PORT and so on, else the defaults below), so it never
touches a `make run` instance's data or ports. It always runs the embedded
default, a private MariaDB and Redis, on loopback.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.settings import Settings

PORTS = {"RTB_HTTP_PORT": 8180, "RTB_SIP_PORT": 5160, "RTB_RPC_PORT": 5180,
         "RTB_DB_PORT": 3407, "RTB_REDIS_PORT": 6480, "RTB_METRICS_PORT": 9564}
# An operator's own servers and names are never the demo's.
DROPPED = ("RTB_DATABASE_URL", "RTB_KAMAILIO_DATABASE_URL", "RTB_REDIS_URL", "RTB_SIP_DOMAIN",
           "RTB_SIP_REALM")
LOOPBACK = {"RTB_HTTP_HOST": "127.0.0.1", "RTB_SIP_ADDR": "127.0.0.1",
            "RTB_METRICS_HOST": "127.0.0.1"}


def demo_env(env: Mapping[str, str]) -> dict[str, str]:
    demo = {name: value for name, value in env.items() if name not in DROPPED}
    demo.update({name: env.get(name.replace("RTB_", "RTB_DEMO_", 1), str(port))
                 for name, port in PORTS.items()})
    demo.update(LOOPBACK, RTB_VAR_DIR=str(Settings.from_env(dict(env)).var_dir / "demo"),
                RTB_HTTP_WORKERS=env.get("RTB_DEMO_HTTP_WORKERS", "2"))
    return demo
