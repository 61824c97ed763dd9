"""Hand-made SIP over plain sockets, for what SIPp and sipsak will not send:
garbage, truncated, oversized and hostile requests, floods, and digest
answers computed here. Every wait is bounded."""

from __future__ import annotations

import hashlib
import re
import socket
import time
import uuid as uuidlib

Edge = tuple[str, int]


def request(method: str, uri: str, source_ip: str, *, headers: dict[str, str] | None = None,
            body: str = "", drop: tuple[str, ...] = ()) -> bytes:
    """A well-formed request; `headers` add or replace headers, `drop` removes them."""
    call_id = uuidlib.uuid4().hex
    fields = {
        "Via": f"SIP/2.0/UDP {source_ip}:5060;branch=z9hG4bK{call_id[:16]};rport",
        "From": f"<sip:publisher@{source_ip}>;tag={call_id[:8]}",
        "To": f"<{uri}>",
        "Call-ID": f"{call_id}@{source_ip}",
        "CSeq": f"1 {method}",
        "Contact": f"<sip:publisher@{source_ip}>",
        "Max-Forwards": "70",
        **(headers or {}),
    }
    for name in drop:
        fields.pop(name, None)
    lines = [f"{method} {uri} SIP/2.0", *(f"{k}: {v}" for k, v in fields.items())]
    if "Content-Length" not in fields and "Content-Length" not in drop:
        lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def status(reply: str | None) -> int | None:
    found = re.match(r"SIP/2\.0 (\d{3})", reply or "")
    return int(found.group(1)) if found else None


def _final(text: str) -> str | None:
    """The first final (>= 200) reply in what was received, if complete."""
    for reply in re.split(r"(?=SIP/2\.0 \d{3} )", text):
        code = status(reply)
        if code and code >= 200 and "\r\n\r\n" in reply:
            return reply
    return None


def send(edge: Edge, message: bytes, source_ip: str = "127.0.0.1", *, transport: str = "udp",
         timeout: float = 3.0) -> str | None:
    """Send one message; the final reply, or None when none came within the timeout
    (or the TCP connection was closed first)."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((source_ip, 0))
        sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            if transport == "udp":
                sock.sendto(message, edge)
            else:
                sock.connect(edge)
                sock.sendall(message)
            received = ""
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                received += chunk.decode(errors="replace")
                if (reply := _final(received)) is not None:
                    return reply
        except (TimeoutError, ConnectionError):
            return None
    return None


def keepalive(edge: Edge, source_ip: str = "127.0.0.1", timeout: float = 3.0) -> int | None:
    """The status of an OPTIONS keepalive (200 while the edge is up and lets us in)."""
    uri = f"sip:{edge[0]}:{edge[1]}"
    return status(send(edge, request("OPTIONS", uri, source_ip), source_ip, timeout=timeout))


def flood(edge: Edge, source_ip: str, count: int) -> None:
    """`count` keepalives from one source as fast as a socket sends them, unread."""
    uri = f"sip:{edge[0]}:{edge[1]}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source_ip, 0))
        for _ in range(count):
            sock.sendto(request("OPTIONS", uri, source_ip), edge)


def _digest(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.split(" ", 1)[1]))

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    realm, nonce = params["realm"], params["nonce"]
    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    fields = f'username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
    if "qop" in params:
        cnonce = uuidlib.uuid4().hex[:16]
        answer = md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
        return f'Digest {fields}, qop=auth, nc=00000001, cnonce="{cnonce}", response="{answer}"'
    return f'Digest {fields}, response="{md5(f"{ha1}:{nonce}:{ha2}")}"'


def digest_invite(edge: Edge, source_ip: str, uri: str, user: str, password: str,
                  timeout: float = 3.0) -> int | None:
    """An INVITE answered to its 407 with these credentials: the final status, or
    None when either step got no answer. Only for INVITEs that are to be refused."""
    challenged = send(edge, request("INVITE", uri, source_ip), source_ip, timeout=timeout)
    if status(challenged) != 407:
        return status(challenged)
    challenge = re.search(r"Proxy-Authenticate: (.*)\r\n", challenged).group(1)
    credentials = {"Proxy-Authorization": _digest(challenge, user, password, "INVITE", uri),
                   "CSeq": "2 INVITE"}
    return status(send(edge, request("INVITE", uri, source_ip, headers=credentials), source_ip,
                       timeout=timeout))
