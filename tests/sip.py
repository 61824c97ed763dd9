"""Real SIP peers for the tests: SIPp as buyers and publishers, sipsak for probes.

Publisher scenarios are built from fragments: dial with or without digest
credentials, and either connect (ACK, hold, BYE) or expect one final refusal.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from app.kamailio_rpc import KamailioRPC
from app.stack.demo.sipp import free_media_port
from tests.polling import eventually

SCENARIOS = Path(__file__).parent / "scenarios"
SDP = """
      v=0
      o=publisher 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000"""
DIALOG = """
      From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@[domain]>{to_tag}
      Call-ID: [call_id]
      CSeq: {cseq} {method}"""


def _request(method: str, cseq: int, *, uri: str = "sip:[field0]@[domain]", to_tag: str = "",
             extra: str = "", body: str = "", caller: str = "publisher") -> str:
    dialog = DIALOG.format(to_tag=to_tag, cseq=cseq, method=method, caller=caller)
    content = "\n      Content-Type: application/sdp\n      Content-Length: [len]" if body else \
        "\n      Content-Length: 0"
    lines = f"""
      {method} {uri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]{dialog}{extra}
      Contact: <sip:publisher@[local_ip]:[local_port]>
      Max-Forwards: 70{content}
{body}
"""
    retrans = ' retrans="500"' if method in ("INVITE", "BYE") else ""
    return f"  <send{retrans}><![CDATA[{lines}    ]]></send>\n"


def _refused_ack(cseq: int, caller: str) -> str:
    return _request("ACK", cseq, to_tag="[peer_tag_param]", caller=caller)


def publisher_scenario(*, auth: bool = False, refused_with: int | None = None,
                       caller_id: str | None = None, hold_ms: int = 200,
                       headers: tuple[str, ...] = ()) -> str:
    """INVITE (answering a 407 with digest when auth), then connect (hold_ms, then
    BYE) or expect a refusal.

    caller_id 'from' puts the injection file's second field in From, 'pai' in
    a P-Asserted-Identity (as carriers send it), with a From that is not it.
    headers go in the INVITE as they are."""
    caller = "[field1]" if caller_id == "from" else "publisher"
    pai = "\n      P-Asserted-Identity: <sip:[field1]@carrier.invalid>" if caller_id == "pai" else ""
    pai += "".join(f"\n      {header}" for header in headers)
    steps = [_request("INVITE", 1, body=SDP, caller=caller, extra=pai),
             '  <recv response="100" optional="true"/>\n']
    cseq = 1
    if auth:
        cseq = 2
        steps += ['  <recv response="407" auth="true"/>\n', _refused_ack(1, caller),
                  _request("INVITE", 2, body=SDP, caller=caller,
                           extra="\n      [authentication]"),
                  '  <recv response="100" optional="true"/>\n']
    if refused_with is not None:
        steps += [f'  <recv response="{refused_with}"/>\n', _refused_ack(cseq, caller)]
    else:
        in_dialog = {"uri": "[next_url]", "to_tag": "[peer_tag_param]", "extra": "\n      [routes]",
                     "caller": caller}
        # Two children of the edge may relay a buyer's 180 and 200 at once,
        # and UDP keeps no order. A phone ignores a 180 after the 200 (RFC
        # 3261 17.1.1.2), where SIPp would abort the call: the call is held
        # waiting for that late 180, and once it came, for hold_ms again.
        steps += ['  <recv response="180" optional="true"/>\n',
                  '  <recv response="200" rrs="true"/>\n',
                  _request("ACK", cseq, **in_dialog),
                  f'  <recv response="180" timeout="{hold_ms}" ontimeout="hang_up"/>\n',
                  f'  <pause milliseconds="{hold_ms}"/>\n', '  <label id="hang_up"/>\n',
                  _request("BYE", cseq + 1, **in_dialog), '  <recv response="200"/>\n']
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
            '<scenario name="publisher">\n' + "".join(steps) + "</scenario>\n")


def free_port(ip: str = "127.0.0.1", kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


def listening(port: int, transport: str = "u1", pid: int | None = None) -> bool:
    """Something (process pid, when given) has bound this UDP port on 127.0.0.1
    ("u1"), or listens on this TCP port ("t1"). Read from /proc: probing by
    binding could take the port from the process starting."""
    table, state = ("udp", None) if transport.startswith("u") else ("tcp", "0A")
    local = f"0100007F:{port:04X}"
    inodes = _sockets(pid) if pid else None
    for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and state in (None, fields[3]) and \
                (inodes is None or fields[9] in inodes):
            return True
    return False


def _sockets(pid: int) -> set[str]:
    """The inodes of the sockets process pid holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    return inodes


def free_sip_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP."""
    while True:
        port = free_port()
        with socket.socket() as tcp:
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


@dataclass
class Buyer:
    """A SIPp UAS answering `calls` calls on 127.0.0.1, then exiting by itself.

    trace keeps every message for messages_wait_for(); the benchmark, whose
    buyer takes thousands of calls, goes without. -aa answers the edge's
    keepalives (OPTIONS within the call). It ignores an unexpected message
    instead of aborting the call, as a phone ignores a retransmission: when
    the edge is busy (a burst of claims, a loaded machine) the 180 reaches it
    after T1 (500 ms), it sends the INVITE again, and the buyer's own
    retransmitted 200 answers it."""

    workdir: Path
    calls: int = 1
    # Chosen free when not given.
    port: int | None = None
    # A file in tests/scenarios, or a path (gateway_scenario() writes one).
    scenario: str | Path = "buyer.xml"
    # SIPp quits after this many seconds whatever happens.
    timeout: int = 60
    trace: bool = True
    # SIPp's -t: u1 (UDP) or t1 (TCP).
    transport: str = "u1"

    def __post_init__(self):
        """Return once SIPp listens, so the edge's first INVITE finds it.

        A SIP or media port chosen here that SIPp could not bind (taken since it
        was found free) is replaced by another; a SIP port the test gave is kept."""
        given = self.port is not None
        for _ in range(3):
            self.port = self.port if given else free_port()
            self.media_port = free_media_port()
            self._start()
            if eventually(self._listening, 10, interval=0.02) and self.proc.poll() is None:
                return
            self.stop()
        errors = self.workdir / f"buyer-{self.port}.err"
        raise RuntimeError(f"SIPp buyer on port {self.port} did not start: "
                           f"{errors.read_text() if errors.exists() else 'no error file'}")

    def _start(self) -> None:
        self.messages = self.workdir / f"buyer-{self.port}-{Path(self.scenario).name}.log"
        options = ["-trace_msg", "-message_file", str(self.messages)] if self.trace else []
        options += ["-default_behaviors", "all,-abortunexp"]
        self.proc = subprocess.Popen(
            ["sipp", "-sf", str(SCENARIOS / self.scenario), "-i", "127.0.0.1", "-t", self.transport,
             "-p", str(self.port), "-mp", str(self.media_port), "-m", str(self.calls),
             "-timeout", f"{self.timeout}s", "-nostdin", "-aa", *options,
             "-trace_err", "-error_file", str(self.workdir / f"buyer-{self.port}.err")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.workdir)

    def _listening(self) -> bool:
        """SIPp has bound its SIP port and its media ports (it binds them after
        the SIP port, and exits when one is taken), or has exited."""
        if self.proc.poll() is not None:
            return True
        try:
            return listening(self.port, self.transport, self.proc.pid) and all(
                listening(port, "u1", self.proc.pid)
                for port in (self.media_port, self.media_port + 2))
        except FileNotFoundError:
            return True

    @property
    def uri(self) -> str:
        return f"sip:buyer@127.0.0.1:{self.port}"

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def received(self) -> str:
        return self.messages.read_text(errors="replace") if self.messages.exists() else ""

    def messages_wait_for(self, uuid: str, timeout: float = 10) -> bool:
        """Wait until the INVITE for this reservation has reached the buyer."""
        return eventually(lambda: f"X-RTB-Reservation: {uuid}" in self.received(), timeout,
                          interval=0.05)


@dataclass
class Dial:
    returncode: int
    log: str
    successful: int
    failed: int


def publisher_argv(workdir: Path, edge: tuple[str, int], uuid: str | list[str], *,
                   source_ip: str = "127.0.0.1", domain: str | None = None,
                   user: str | None = None, password: str | None = None,
                   refused_with: int | None = None, hold_ms: int = 200, calls: int = 1,
                   rate: int = 10, transport: str = "u1",
                   caller_id: tuple[str, str] | None = None, headers: tuple[str, ...] = (),
                   timeout_s: int = 30) -> tuple[list[str], Path]:
    """SIPp as a publisher (see dial()), and the file it writes its errors to.

    -aa answers the edge's keepalives (OPTIONS within the call)."""
    auth = user is not None
    uuids = [uuid] * calls if isinstance(uuid, str) else uuid
    caller = caller_id[1] if caller_id else ""
    injection = workdir / f"uuids-{free_port()}.csv"
    injection.write_text("SEQUENTIAL\n" + "".join(f"{u};{caller};\n" for u in uuids))
    how = caller_id[0] if caller_id else None
    scenario = workdir / (f"publisher-{'auth' if auth else 'ip'}-{refused_with or 'call'}-{how}"
                          f"-{hold_ms}-{len(headers)}.xml")
    scenario.write_text(publisher_scenario(auth=auth, refused_with=refused_with, caller_id=how,
                                           hold_ms=hold_ms, headers=headers))
    port = free_port(source_ip)
    errors = workdir / f"publisher-{port}.err"
    argv = ["sipp", f"{edge[0]}:{edge[1]}", "-sf", str(scenario), "-inf", str(injection),
            "-key", "domain", domain or edge[0], "-i", source_ip, "-p", str(port),
            "-mp", str(free_media_port(source_ip)), "-t", transport, "-m", str(len(uuids)),
            "-r", str(rate), "-timeout", f"{timeout_s}s", "-timeout_error",
            "-nostdin", "-aa", "-trace_err", "-error_file", str(errors)]
    if auth:
        argv += ["-au", user, "-ap", password or ""]
    return argv, errors


def dial(workdir: Path, edge: tuple[str, int], uuid: str | list[str], **options) -> Dial:
    """Run SIPp as a publisher: rc 0 when every call went as the scenario expects.

    With a list of uuids, call i dials uuids[i] (SIPp's -inf injection file).
    A carrier dials a number instead of a uuid, with caller_id ('from' or
    'pai', the caller's number). Options: publisher_argv()'s."""
    argv, errors = publisher_argv(workdir, edge, uuid, **options)
    done = subprocess.run(argv, capture_output=True, text=True, cwd=workdir, timeout=60)
    log = errors.read_text(errors="replace") if errors.exists() else ""
    return Dial(done.returncode, log + done.stdout[-2000:], screen_count("Successful call", done.stdout),
                screen_count("Failed call", done.stdout))


def start_dial(workdir: Path, edge: tuple[str, int], uuid: str, *, hold_s: int,
               **options) -> tuple[subprocess.Popen, Path]:
    """One call held hold_s seconds by SIPp in the background (it gives up 30 s
    later), and the file where it traces every message it sends and receives."""
    argv, _ = publisher_argv(workdir, edge, uuid, hold_ms=hold_s * 1000, timeout_s=hold_s + 30,
                             **options)
    messages = workdir / f"publisher-{uuid}.log"
    argv += ["-trace_msg", "-message_file", str(messages)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=workdir), messages


def whitelisted(rpc: KamailioRPC, ip: str) -> bool:
    """The edge's permissions module holds ip in its address table."""
    return f'"{ip}"' in json.dumps(rpc.call("permissions.addressDump"))


def screen_count(row: str, screen: str) -> int:
    """The cumulative column of a row of SIPp's final statistics screen."""
    found = re.findall(rf"{row}\s*\|\s*\d+\s*\|\s*(\d+)", screen)
    return int(found[-1]) if found else 0


def sipsak(*args: str, message: str | None = None, workdir: Path | None = None) -> str:
    """Run sipsak verbosely; returns what it printed (it prints the replies it got)."""
    argv = ["sipsak", "-vv", *args]
    if message is not None:
        path = (workdir or Path(".")) / "sipsak-message.txt"
        path.write_bytes(message.replace("\n", "\r\n").encode())
        argv += ["-f", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


def invite_text(uuid: str, domain: str, source_ip: str) -> str:
    """A bare INVITE for sipsak -f; sipsak adds its own Via."""
    return (f"INVITE sip:{uuid}@{domain} SIP/2.0\n"
            f"From: <sip:publisher@{source_ip}>;tag=sipsak{uuid[:8]}\n"
            f"To: <sip:{uuid}@{domain}>\n"
            f"Call-ID: {uuid}-sipsak@{source_ip}\n"
            "CSeq: 1 INVITE\n"
            f"Contact: <sip:publisher@{source_ip}>\n"
            "Max-Forwards: 70\n"
            "Content-Length: 0\n\n")
