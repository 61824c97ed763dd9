"""A cluster of its own for the cluster tests and `make cluster-soak`: started
and restored by `python -m app.stack.cluster up` (what `make cluster-up`
runs), on ports shifted clear of anything listening, in its own state folder.
Publishers' requests and calls go to every app node and every edge."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from app.db import make_sessionmaker
from app.kamailio_rpc import KamailioRPC
from app.settings import Settings
from app.stack.cluster import BASE_PORTS, Cluster
from app.stack.galera import GaleraNode
from tests.conftest import SIP_DOMAIN
from tests.instance import DatabaseAccess, PublisherApi
from tests.market import Market
from tests.polling import eventually
from tests.sip import whitelisted

# Seconds a request may take, failover included, before it counts as a hang.
HANG_SECONDS = 10


@dataclass
class AppNode(PublisherApi):
    url: str
    timeout: float = HANG_SECONDS


def ports_free(offset: int) -> bool:
    for base in BASE_PORTS.values():
        for n in range(3):
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as probe:
                    try:
                        probe.bind(("127.0.0.1", base + offset + n))
                    except OSError:
                        return False
    return True


def free_offset() -> int:
    """RTB_CLUSTER_PORT_OFFSET for a cluster whose every port is free now, and
    below Linux's ephemeral ports (32768 on), which a client's connection may
    take before a node binds it."""
    for _ in range(50):
        offset = random.randrange(10000, 32768 - max(BASE_PORTS.values()) - 3, 10)
        if ports_free(offset):
            return offset
    raise RuntimeError("no free set of ports for a cluster")


class LoopbackCluster(DatabaseAccess):
    def __init__(self, var_dir: Path, **settings: str):
        """settings: more RTB_* variables for every node."""
        self.env = {"RTB_VAR_DIR": str(var_dir), "RTB_CLUSTER_PORT_OFFSET": str(free_offset()),
                    "RTB_SIP_DOMAIN": SIP_DOMAIN, **settings}
        self.settings = Settings.from_env(self.env)
        self.nodes = Cluster(self.env)
        self.topology: dict = {}
        self.sessions = None

    def up(self) -> LoopbackCluster:
        done = subprocess.run([sys.executable, "-m", "app.stack.cluster", "up"],
                              env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"cluster up failed:\n{done.stderr[-3000:]}")
        self.topology = json.loads(done.stdout)
        if self.sessions is None:
            # The app's own sessions, as app node 1 makes them: they follow the writer.
            self.sessions = make_sessionmaker(Settings.from_env(self.nodes.app_env(0)))
        return self

    def stop(self) -> None:
        """cluster down; the state folder stays."""
        if self.sessions is not None:
            self.sessions.kw["bind"].dispose()
        subprocess.run([sys.executable, "-m", "app.stack.cluster", "down"],
                       env={**os.environ, **self.env}, capture_output=True, timeout=600)

    @property
    def apps(self) -> list[AppNode]:
        return [AppNode(node["url"]) for node in self.topology["http"]]

    @property
    def edges(self) -> list[tuple[str, int]]:
        return [(host, int(port)) for host, port in
                (node["address"].split(":") for node in self.topology["sip"])]

    @property
    def edge(self) -> tuple[str, int]:
        """Any edge, as a publisher given every address picks one."""
        return random.choice(self.edges)

    def market(self, targets: list[dict], **key_settings) -> Market:
        """As on one instance, once every edge lets the publisher's address in.
        An edge whose reload was refused, or read a node not yet up to date,
        loads it by itself within seconds (RTB_WHITELIST in kamailio.cfg)."""
        made = super().market(targets, **key_settings)
        for edge in self.topology["sip"] if made.ip else ():
            rpc = KamailioRPC(edge["rpc"], self.nodes.settings.rpc_secret_file, 2)
            assert eventually(lambda: whitelisted(rpc, made.ip), 20), f"{made.ip} not on {edge}"
        return made

    def ping(self, key: str, **params) -> tuple[int, dict]:
        return random.choice(self.apps).ping(key, **params)

    def confirm(self, key: str, uuid: str) -> tuple[int, dict]:
        return random.choice(self.apps).confirm(key, uuid)

    def writer(self) -> GaleraNode:
        """The node topology.json named the writer when the cluster was last brought up."""
        [index] = [n for n, db in enumerate(self.topology["db"]) if db["writer"]]
        return self.nodes.databases[index]

    def node_rows(self, node: GaleraNode, sql: str) -> list[list[str]]:
        """sql's rows read on one node itself, not through the writer."""
        out = node.root_sql(sql, database="rtb", timeout=10)
        return [line.split("\t") for line in out.splitlines()]
