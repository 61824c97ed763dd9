"""The demo's traffic: a real ping over HTTP, then a real call through the
edge to the sip_address it answered, from the publisher's address."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from app.settings import Settings
from app.stack.demo import sipp
from app.stack.demo.market import PUBLISHER_IP

# Fictional US numbers (555-01xx), in turn: a caller on a live call is
# answered by Ping Shield with that call's reservation.
CALLERS = (f"20255501{n:02d}" for n in itertools.cycle(range(100)))


class Traffic:
    def __init__(self, settings: Settings, key: str, workdir: Path):
        self.url = f"http://{settings.http_host}:{settings.http_port}/rtbs.json"
        self.edge = (settings.sip_addr, settings.sip_port)
        self.key = key
        self.workdir = workdir
        self.calls: list[subprocess.Popen] = []

    def ping(self, caller: str) -> dict:
        query = urllib.parse.urlencode({"key": self.key, "caller_number": caller})
        request = urllib.request.Request(f"{self.url}?{query}", data=b"", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            return json.load(error)

    def step(self) -> str:
        """One ping, and a call when it answered a sip_address; a line on what happened."""
        self.calls = [call for call in self.calls if call.poll() is None]
        caller = next(CALLERS)
        try:
            answer = self.ping(caller)
        except OSError as error:
            return f"ping {caller}: no answer ({error})"
        rtb = answer.get("rtb", {})
        if "sip_address" not in rtb:
            error = answer.get("error", {})
            return f"ping {caller}: {rtb.get('status') or error.get('code')} (no call)"
        self.calls.append(sipp.dial(self.workdir, self.edge, rtb["sip_address"], caller,
                                    PUBLISHER_IP))
        return (f"ping {caller}: {rtb['status']} ${rtb['retreaver_payout']:.2f}"
                f" -> calling {rtb['sip_address']}")

    def wait(self, timeout: float) -> None:
        """Let the calls in flight end; those still up after timeout are ended."""
        deadline = time.monotonic() + timeout
        for call in self.calls:
            try:
                call.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self.stop()

    def stop(self) -> None:
        sipp.stop(self.calls)
        self.calls = []
