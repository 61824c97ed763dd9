"""Freshness: a ping, then at once an INVITE for the reservation it answered.

Counts the calls that connected and times each from the ping's HTTP answer
to the edge's 100 Trying (sent once the reservation is found and claimed).
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlencode

from tests.bench.data import Caller
from tests.bench.report import distribution
from tests.bench.sipua import Caller as SipCaller


def ping(conn: http.client.HTTPConnection, key: str, n: int) -> str | None:
    body = urlencode({"key": key, "caller_number": f"212555{n % 10000:04d}"})
    conn.request("POST", "/rtbs.json", body, {"Content-Type": "application/x-www-form-urlencoded"})
    answer = json.loads(conn.getresponse().read())
    return answer.get("rtb", {}).get("uuid")


def measure(http_addr: tuple[str, int], edge: tuple[str, int], domain: str, caller: Caller,
            pairs: int, progress) -> dict:
    sip = SipCaller(caller.ip, edge, domain)
    codes: dict[str, int] = {}
    trying_ms = []
    try:
        for n in range(pairs):
            # gunicorn's sync workers close each connection, so each ping opens its own.
            conn = http.client.HTTPConnection(*http_addr, timeout=10)
            try:
                uuid = ping(conn, caller.key, n)
            finally:
                conn.close()
            code, trying = sip.call(uuid) if uuid else (-1, None)
            codes[str(code)] = codes.get(str(code), 0) + 1
            if trying is not None:
                trying_ms.append(trying * 1000)
            if (n + 1) % 250 == 0:
                progress(f"freshness: {n + 1} of {pairs} pairs, {codes.get('200', 0)} connected")
    finally:
        sip.close()
    return {"pairs": pairs, "connected": codes.get("200", 0), "final_codes": codes,
            "ping_to_trying_ms": distribution(trying_ms)}
