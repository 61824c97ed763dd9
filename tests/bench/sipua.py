"""A minimal SIP UAC over UDP for the freshness step: one call at a time, timed to the 100 Trying.

SIPp cannot wait for an HTTP answer before it dials; this can. It places a
call, ACKs the 200 and hangs up along the recorded route, as a publisher does.
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass


@dataclass
class Response:
    code: int
    headers: dict[str, list[str]]

    def first(self, name: str) -> str:
        return self.headers.get(name.lower(), [""])[0]


def parse(data: bytes) -> Response | None:
    """A response's code and headers (names lower-cased; repeated and comma-joined ones split)."""
    head = data.decode(errors="replace").split("\r\n\r\n", 1)[0].split("\r\n")
    if not head[0].startswith("SIP/2.0 "):
        return None
    headers: dict[str, list[str]] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        values = value.split(",") if name.strip().lower() == "record-route" else [value]
        headers.setdefault(name.strip().lower(), []).extend(v.strip() for v in values)
    return Response(int(head[0].split()[1]), headers)


class Caller:
    def __init__(self, ip: str, edge: tuple[str, int], domain: str):
        self.ip, self.edge, self.domain = ip, edge, domain
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def _request(self, method: str, uri: str, call_id: str, cseq: int, to_tag: str = "",
                 routes: list[str] = ()) -> bytes:
        lines = [f"{method} {uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport",
                 "Max-Forwards: 70",
                 f"From: <sip:publisher@{self.ip}>;tag={call_id[:12]}",
                 f"To: <{self.to_uri}>{to_tag}",
                 f"Call-ID: {call_id}", f"CSeq: {cseq} {method}",
                 f"Contact: <sip:publisher@{self.ip}:{self.port}>",
                 *(f"Route: {r}" for r in routes), "Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode()

    def _receive(self, deadline: float) -> Response | None:
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            return parse(self.sock.recv(65535))
        except TimeoutError:
            return None

    def call(self, uuid: str, timeout: float = 10) -> tuple[int, float | None]:
        """Dial sip:<uuid>@domain: (final code or 0 on timeout, seconds from now to the 100)."""
        self.to_uri = f"sip:{uuid}@{self.domain}"
        call_id = f"{secrets.token_hex(12)}@{self.ip}"
        invite = self._request("INVITE", self.to_uri, call_id, 1)
        started = time.perf_counter()
        deadline, resend, trying = time.monotonic() + timeout, time.monotonic() + 0.5, None
        self.sock.sendto(invite, self.edge)
        while time.monotonic() < deadline:
            reply = self._receive(min(deadline, resend))
            if reply is None:
                if time.monotonic() >= resend:
                    self.sock.sendto(invite, self.edge)
                    resend = time.monotonic() + 1
                continue
            if reply.code == 100 and trying is None:
                trying = time.perf_counter() - started
            if reply.code >= 200 and "INVITE" in reply.first("cseq"):
                if reply.code == 200:
                    self._hang_up(reply, call_id)
                return reply.code, trying
        return 0, trying

    def _hang_up(self, ok: Response, call_id: str) -> None:
        """ACK the 200 and send BYE along the Record-Route set, to the buyer's Contact."""
        contact = ok.first("contact").strip("<>").split(">")[0]
        to_tag = ";" + ok.first("to").split(";", 1)[1] if ";" in ok.first("to") else ""
        routes = list(reversed(ok.headers.get("record-route", [])))
        self.sock.sendto(self._request("ACK", contact, call_id, 1, to_tag, routes), self.edge)
        self.sock.sendto(self._request("BYE", contact, call_id, 2, to_tag, routes), self.edge)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            reply = self._receive(deadline)
            if reply is not None and "BYE" in reply.first("cseq"):
                return
