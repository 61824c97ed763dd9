"""python -m app.stack.cluster {up,down,status}: a cluster on this machine, on
loopback, under $RTB_VAR_DIR/cluster/: 3 Galera nodes, 2 SIP edges (Kamailio,
each with its own Redis) and 2 app nodes (gunicorn, the metrics exporter, the
postback worker), each part started by the same classes as `make run`.

up      starts every part that is not running (a node that died comes back
        and rejoins), then writes topology.json with the current pids
down    stops every part; the data stays
status  prints the topology as up would write it
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from app.console import secret_key
from app.kamailio_rpc import rpc_secret
from app.settings import Settings, SettingsError
from app.stack.__main__ import parts
from app.stack.galera import GaleraNode, GaleraPorts
from app.stack.process import StartError

DATABASES, EDGES, APPS = 3, 2, 2
# Node n's port is the base + n (+ RTB_CLUSTER_PORT_OFFSET).
BASE_PORTS = {"db": 3311, "group": 4571, "ist": 4581, "sst": 4591, "sip": 5261, "rpc": 5281,
              "redis": 6391, "http": 8281, "metrics": 9471}


@dataclass
class Node:
    """An edge or app node: its settings, made from env, and its parts in start order."""

    name: str
    settings: Settings
    parts: list


class Cluster:
    def __init__(self, env: dict[str, str] | None = None):
        self.env = dict(os.environ if env is None else env)
        self.settings = Settings.from_env(self.env)
        self.dir = self.settings.var_dir / "cluster"
        self.databases = [
            GaleraNode(self.settings, f"db{n + 1}", self.dir / f"db{n + 1}",
                       GaleraPorts(*(self.port(kind, n) for kind in ("db", "group", "ist", "sst"))),
                       [self.port("group", m) for m in range(DATABASES)],
                       self.dir / "credentials.json",
                       # The writer gives a copy last: the copy holds up a donor's writes.
                       [f"db{m + 1}" for m in reversed(range(DATABASES)) if m != n])
            for n in range(DATABASES)]

    def exists(self) -> bool:
        return self.databases[0].credentials_file.exists()

    def port(self, kind: str, n: int) -> int:
        return BASE_PORTS[kind] + self.settings.cluster_port_offset + n

    def database_urls(self, user: str) -> str:
        return ",".join(db.url(user).render_as_string(hide_password=False)
                        for db in self.databases)

    def node_env(self, name: str, role: str, **values: str) -> dict[str, str]:
        """A node's RTB_* variables: the cluster's, its own role and state folder,
        every database (writer preference first) and every edge."""
        env = {key: value for key, value in self.env.items() if key != "RTB_REDIS_URL"}
        return {**env, "RTB_HTTP_WORKERS": self.env.get("RTB_HTTP_WORKERS", "2"),
                "RTB_ROLES": role, "RTB_VAR_DIR": str(self.dir / name),
                "RTB_DATABASE_URLS": self.database_urls("rtb"),
                "RTB_KAMAILIO_DATABASE_URLS": self.database_urls("kamailio"),
                "RTB_EDGES": ",".join(f"http://127.0.0.1:{self.port('rpc', n)}/RPC"
                                      for n in range(EDGES)),
                **values}

    def edge_env(self, n: int) -> dict[str, str]:
        """Edge n's variables (from 0)."""
        return self.node_env(f"edge{n + 1}", "edge", RTB_SIP_PORT=str(self.port("sip", n)),
                             RTB_RPC_PORT=str(self.port("rpc", n)),
                             RTB_REDIS_PORT=str(self.port("redis", n)))

    def app_env(self, n: int) -> dict[str, str]:
        """App node n's variables (from 0)."""
        return self.node_env(f"app{n + 1}", "app", RTB_HTTP_PORT=str(self.port("http", n)),
                             RTB_METRICS_PORT=str(self.port("metrics", n)))

    def edges(self) -> list[Node]:
        return [self._node(f"edge{n + 1}", self.edge_env(n)) for n in range(EDGES)]

    def apps(self) -> list[Node]:
        return [self._node(f"app{n + 1}", self.app_env(n)) for n in range(APPS)]

    def _node(self, name: str, env: dict[str, str]) -> Node:
        """The parts of the node's role, as `make up` with its variables starts them."""
        settings = self._settings(env)
        node_parts = parts(settings)
        for part in node_parts:
            # The app's processes read their settings from the environment.
            part.service.env.update(env)
        return Node(name, settings, node_parts)

    def _settings(self, env: dict[str, str]) -> Settings:
        """The node's settings; its secrets are the cluster's, so that every edge
        takes every app's pushes and a console login holds on every app node."""
        settings = Settings.from_env(env)
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        rpc_secret(self.settings.rpc_secret_file)
        secret_key(self.settings.admin_secret_file)
        for shared, own in ((self.settings.rpc_secret_file, settings.rpc_secret_file),
                            (self.settings.admin_secret_file, settings.admin_secret_file)):
            if not own.is_symlink():
                own.unlink(missing_ok=True)
                own.symlink_to(shared)
        return settings

    def writer(self) -> GaleraNode | None:
        """The first synced node, in writer preference order."""
        return next((db for db in self.databases if db.synced()), None)

    def topology(self) -> dict:
        writer = self.writer()
        return {
            "http": [{"url": app.parts[0].url, "pid": app.parts[0].service.pid()}
                     for app in self.apps()],
            "sip": [{"address": f"{edge.settings.sip_addr}:{edge.settings.sip_port}",
                     "rpc": edge.settings.rpc_url, "pid": edge.parts[-1].service.pid()}
                    for edge in self.edges()],
            "db": [{"port": db.port, "pid": db.service.pid(), "writer": db is writer}
                   for db in self.databases],
        }


def start_databases(databases: list[GaleraNode]) -> GaleraNode | None:
    """Join the stopped nodes to the running ones; with none running, found the
    cluster again from the node that left last, or after a crash of them all,
    from the one whose data goes furthest (the first of equals), and return it."""
    stopped = [db for db in databases if not db.service.alive()]
    # One at a time: mariadb-install-db run twice at once failed here.
    for db in stopped:
        db.prepare()
    founder = None
    if len(stopped) == len(databases):
        founder = next((db for db in databases if db.safe_to_bootstrap()), None)
        founder = founder or max(databases, key=GaleraNode.recovered_seqno)
        founder.start(new_cluster=True)
        stopped.remove(founder)
    with ThreadPoolExecutor(max_workers=len(databases)) as pool:
        for done in [pool.submit(db.start) for db in stopped]:
            done.result()
    return founder


def up(cluster: Cluster) -> dict:
    founder = start_databases(cluster.databases)
    if founder is not None:
        # Users, schema upgrades and grants, which replicate to every node: only
        # when the cluster starts, as `make up` upgrades before anything runs.
        # Re-made under load, a trigger failed to parse for the requests
        # running beside it.
        founder.bootstrap()
    if cluster.writer() is None:
        raise StartError("no database node is synced; see the db*/error.log files")
    for node in [*cluster.edges(), *cluster.apps()]:
        for part in node.parts:
            if not part.service.alive():
                part.start()
    topology = cluster.topology()
    path = cluster.dir / "topology.json"
    path.write_text(json.dumps(topology, indent=2) + "\n")
    return topology


def down(cluster: Cluster) -> None:
    """Apps, then edges, then the databases from the last: the writer leaves
    last, so the next `up` founds the cluster again from it."""
    # Without credentials no edge or app node was ever started.
    nodes = [*cluster.apps(), *cluster.edges()] if cluster.exists() else []
    for node in nodes:
        for part in reversed(node.parts):
            part.stop()
    for db in reversed(cluster.databases):
        db.stop()


def status(cluster: Cluster) -> dict:
    if not cluster.exists():
        raise RuntimeError(f"no cluster in {cluster.dir}: run `make cluster-up` first")
    return cluster.topology()


COMMANDS = {"up": up, "down": down, "status": status}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m app.stack.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=COMMANDS)
    try:
        topology = COMMANDS[parser.parse_args().command](Cluster())
    except (SettingsError, StartError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if topology is not None:
        print(json.dumps(topology, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
