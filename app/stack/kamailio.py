"""Kamailio with kamailio/kamailio.cfg, its tunables set from the settings."""

from __future__ import annotations

import shutil
import subprocess

from app.kamailio_rpc import KamailioRPC, RPCError
from app.settings import Settings
from app.stack.mariadb import kamailio_database_url
from app.stack.process import Service


def defines(settings: Settings) -> list[str]:
    url = kamailio_database_url(settings)
    values = {
        "SIP_ADDR": settings.sip_addr,
        "SIP_PORT": str(settings.sip_port),
        "SIP_DOMAIN": f'"{settings.sip_domain}"',
        "SIP_REALM": f'"{settings.sip_realm}"',
        "RPC_PORT": str(settings.rpc_port),
        "DBURL": f'"{url}"',
        "SQLCON": f'"db=>{url}"',
    }
    return [arg for name, value in values.items() for arg in ("-A", f"{name}={value}")]


def argv(settings: Settings, *extra: str) -> list[str]:
    run_dir = settings.var_dir / "kamailio"
    return [
        shutil.which("kamailio") or "/usr/sbin/kamailio", "-f", str(settings.kamailio_cfg),
        "-Y", str(run_dir), "-w", str(run_dir), "-m", "128", "-M", "16",
        *defines(settings), *extra,
    ]


def check_config(settings: Settings) -> subprocess.CompletedProcess:
    return subprocess.run(argv(settings, "-c"), capture_output=True, text=True)


class Kamailio:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.rpc = KamailioRPC(settings.rpc_url, timeout=1.0)
        # The command line carries the database URL, known once the database is up.
        self.service = Service("kamailio", [], settings.var_dir / "kamailio")

    def _ready(self) -> bool:
        try:
            self.rpc.call("core.version")
        except RPCError:
            return False
        return True

    def start(self) -> None:
        self.service.argv = argv(self.settings, "-DD", "-E")
        self.service.start(self._ready, timeout=30)

    def stop(self) -> None:
        self.service.stop()
