"""SIPp as the demo's buyers (one UAS per buyer, answering every call) and as
its publisher's calls (one SIPp per call). Each runs in a session of its own:
the demo ends them, Ctrl-C in the terminal does not reach them first."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

SCENARIOS = Path(__file__).parent / "scenarios"
# How long a buyer talks before it hangs up, and how long a call may take at all.
TALK_MS = 4000
CALL_TIMEOUT_S = 30


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


def free_media_port(ip: str = "127.0.0.1") -> int:
    """A port for SIPp's -mp. SIPp binds it and the port 2 above (audio and
    video RTP), and exits when either is taken."""
    while True:
        port = free_port(ip)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as video:
            try:
                video.bind((ip, port + 2))
            except (OSError, OverflowError):
                continue
        return port


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
