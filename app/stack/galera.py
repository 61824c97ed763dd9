"""A MariaDB Galera node (Debian's galera-4) under the state folder, on loopback.

Each node has its own datadir, socket and port and its own group (gcomm),
incremental (IST) and snapshot (SST, rsync) addresses; all list every node's
group address. Started by root, it runs as `mysql`: rsync SST's daemon drops
to `nobody` under root and then cannot write the joiner's datadir.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from app.settings import Settings
from app.stack.mariadb import PrivateMariaDB
from app.stack.process import StartError

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
SYNCED = "4"

# A node that stops answering (killed, or frozen by SIGSTOP) is suspected
# after 2 s without a message and evicted from the view at 3 s; the others
# then form the primary component again and go on writing. Galera's defaults
# (5 s, 15 s) hold every commit in the cluster that long behind a frozen node.
GROUP_TIMEOUTS = {
    "evs.keepalive_period": "PT0.5S",
    "evs.inactive_check_period": "PT0.5S",
    "evs.suspect_timeout": "PT2S",
    "evs.inactive_timeout": "PT3S",
    "evs.install_timeout": "PT3S",
    "evs.join_retrans_period": "PT0.5S",
    "gmcast.peer_timeout": "PT2S",
    # A joiner waits this long for a primary component before it gives up.
    "pc.wait_prim_timeout": "PT30S",
}


@dataclass(frozen=True)
class GaleraPorts:
    """One node's ports on 127.0.0.1."""

    db: int
    group: int
    ist: int
    sst: int


class GaleraNode(PrivateMariaDB):
    """Node `name` of the cluster whose group addresses are `peers` (all nodes,
    this one among them), with its state in `dir`. A joiner copies what it lacks
    from the first of `donors` (node names) that can give it, else from any."""

    root_runs_as = "mysql"

    def __init__(self, settings: Settings, name: str, dir: Path, ports: GaleraPorts,
                 peers: list[int], credentials: Path, donors: list[str]):
        self.node_name, self.ports, self.peers, self.donors = name, ports, peers, donors
        super().__init__(settings, dir=dir, port=ports.db, credentials=credentials)
        self.service.name = name
        self._position: str | None = None

    @property
    def grastate(self) -> Path:
        return self.dir / "data" / "grastate.dat"

    def server_options(self) -> list[str]:
        options = ";".join([f"gmcast.listen_addr=tcp://127.0.0.1:{self.ports.group}",
                            f"ist.recv_addr=127.0.0.1:{self.ports.ist}",
                            *(f"{name}={value}" for name, value in GROUP_TIMEOUTS.items())])
        return [
            "--wsrep-on=ON", f"--wsrep-provider={PROVIDER}", "--wsrep-cluster-name=rtb",
            "--wsrep-cluster-address=gcomm://" + ",".join(f"127.0.0.1:{p}" for p in self.peers),
            f"--wsrep-node-name={self.node_name}", "--wsrep-node-address=127.0.0.1",
            f"--wsrep-provider-options={options}", "--wsrep-sst-method=rsync",
            f"--wsrep-sst-receive-address=127.0.0.1:{self.ports.sst}",
            f"--wsrep-sst-donor={','.join(self.donors)},",
            "--binlog-format=ROW", "--default-storage-engine=InnoDB",
            "--innodb-autoinc-lock-mode=2",
            # Binary logging is on under Galera: the schema's functions and triggers need this.
            "--log-bin-trust-function-creators=ON",
        ]

    def start(self, new_cluster: bool = False, timeout: float = 120) -> None:
        """Join the running cluster, or with new_cluster found a new one from this
        node's data. Ready once synced: a joiner first copies the data it lacks."""
        self.prepare()
        argv = self.service.argv
        # After a crash, where its data ends: a joiner then needs only the
        # transactions since (IST), not a copy of everything (SST).
        position = self.recovered_position()
        self.service.argv = [*argv, *([f"--wsrep-start-position={position}"] if position else [])]
        if new_cluster:
            self._mark_safe_to_bootstrap()
            self.service.argv.append("--wsrep-new-cluster")
        try:
            self.service.start(self.synced, timeout=timeout)
        except StartError as error:
            log = self.dir / "error.log"
            tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
            raise StartError("\n".join([f"{error}", f"{log}:", *tail])) from None
        finally:
            self.service.argv = argv
            self._position = None

    def prepare(self) -> None:
        """The datadir, made once; mariadbd runs as mysql: its state is mysql's,
        and the path up to it reachable (o+x, not readable)."""
        self._own_dir()
        self._install()

    def _own_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        for path in [self.dir, *self.dir.rglob("*")]:
            shutil.chown(path, "mysql", "mysql")
        for parent in self.dir.parents:
            if parent.stat().st_mode & 0o001 == 0:
                parent.chmod(parent.stat().st_mode | 0o001)

    def status(self, name: str) -> str | None:
        """A wsrep status variable, or None when the node does not answer (a frozen
        node accepts the connection and then never greets)."""
        try:
            return self.root_sql(f"SHOW STATUS LIKE '{name}'", timeout=2).split("\t")[1].strip()
        except (RuntimeError, IndexError, subprocess.TimeoutExpired):
            return None

    def synced(self) -> bool:
        return self.status("wsrep_local_state") == SYNCED

    def recovered_seqno(self) -> int:
        """How far this stopped node's data goes: grastate.dat's seqno, or the
        recovered one after a crash; -1 for none."""
        position = self.recovered_position() or self._grastate_field("seqno") or "-1"
        return int(position.rsplit(":", 1)[-1])

    def recovered_position(self) -> str | None:
        """After a crash (grastate.dat's seqno -1), uuid:seqno as InnoDB recovers
        it (mariadbd --wsrep-recover, what mysqld_safe does); else None."""
        if self._grastate_field("seqno") != "-1":
            return None
        if self._position is None:
            log = self.dir / "recover.log"
            log.unlink(missing_ok=True)
            subprocess.run([*self.service.argv, "--wsrep-recover", f"--log-error={log}"],
                           capture_output=True, timeout=120)
            text = log.read_text(errors="replace") if log.exists() else ""
            found = re.findall(r"Recovered position: ([0-9a-f-]+:-?\d+)", text)
            self._position = found[-1] if found else ""
        return self._position or None

    def safe_to_bootstrap(self) -> bool:
        return self._grastate_field("safe_to_bootstrap") == "1"

    def _grastate_field(self, name: str) -> str | None:
        try:
            text = self.grastate.read_text()
        except FileNotFoundError:
            return None
        found = re.search(rf"^{name}:\s*(\S+)", text, re.MULTILINE)
        return found.group(1) if found else None

    def _mark_safe_to_bootstrap(self) -> None:
        """Galera refuses to found a cluster from a node that did not leave last;
        the caller chose this one as the most advanced."""
        if self.grastate.exists():
            self.grastate.write_text(re.sub(r"^safe_to_bootstrap:\s*0", "safe_to_bootstrap: 1",
                                            self.grastate.read_text(), flags=re.MULTILINE))
