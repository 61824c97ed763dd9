"""SIPp as the demo's buyers (one UAS per buyer, answering every call) and as
its publisher's calls (one SIPp per call). Each runs in a session of its own:
the demo ends them, Ctrl-C in the terminal does not reach them first."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
from pathlib import Path

SCENARIOS = Path(__file__).parent / "scenarios"
# How long a buyer talks before it hangs up, and how long a call may take at all.
TALK_MS = 4000
CALL_TIMEOUT_S = 30
# SIPp's media ports: above the ports `make run` takes by default, below those
# of a cluster on loopback (13311 on, RTB_CLUSTER_PORT_OFFSET 10000 or more)
# and Linux's ephemeral ports (32768 on), which bind(0) hands out.
MEDIA_PORTS = range(10000, 13300, 2)


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


def free_media_port(ip: str = "127.0.0.1") -> int:
    """A port for SIPp's -mp. SIPp binds it and the port 2 above (audio and
    video RTP), and exits when either is taken.

    Drawn from MEDIA_PORTS, not from the kernel: a port bind(0) gave and that
    was let go is the kernel's to give again, for instance as the same SIPp's
    SIP port, found free the moment before."""
    for port in random.sample(MEDIA_PORTS, 100):
        if all(_udp_free(ip, p) for p in (port, port + 2)):
            return port
    raise RuntimeError(f"no free pair of media ports on {ip}")


def _udp_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def _sipp(argv: list[str], workdir: Path) -> subprocess.Popen:
    return subprocess.Popen([shutil.which("sipp") or "/usr/bin/sipp", *argv],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=workdir, start_new_session=True)


def start_buyer(workdir: Path) -> tuple[subprocess.Popen, str]:
    """A buyer on a free port of 127.0.0.1; returns it and its SIP URI.

    -aa answers the edge's keepalives; an unexpected message (a retransmitted
    INVITE when the edge is slow) is ignored, as a phone ignores it."""
    port = free_port()
    proc = _sipp(["-sf", str(SCENARIOS / "buyer.xml"), "-i", "127.0.0.1", "-p", str(port),
                  "-mp", str(free_media_port()), "-d", str(TALK_MS), "-nostdin", "-aa",
                  "-default_behaviors", "all,-abortunexp"], workdir)
    return proc, f"sip:buyer@127.0.0.1:{port}"


def dial(workdir: Path, edge: tuple[str, int], sip_address: str, caller: str,
         source_ip: str) -> subprocess.Popen:
    """One call to sip_address (uuid@domain) through the edge, from source_ip."""
    uuid, domain = sip_address.split("@", 1)
    return _sipp([f"{edge[0]}:{edge[1]}", "-sf", str(SCENARIOS / "publisher.xml"),
                  "-s", uuid, "-key", "domain", domain, "-key", "caller", caller,
                  "-i", source_ip, "-p", str(free_port(source_ip)),
                  "-mp", str(free_media_port(source_ip)), "-m", "1", "-nostdin", "-aa",
                  "-timeout", f"{CALL_TIMEOUT_S}s", "-timeout_error"], workdir)


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
