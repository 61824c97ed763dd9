"""A small client for Kamailio's JSON-RPC over HTTP (jsonrpcs + xhttp)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from itertools import count

_ids = count(1)


class RPCError(RuntimeError):
    """Kamailio did not answer, or answered with a fault."""


class KamailioRPC:
    def __init__(self, url: str, timeout: float = 0.5):
        self.url = url
        self.timeout = timeout

    def call(self, method: str, *params: object) -> object:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params),
                           "id": next(_ids)}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        try:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    answer = json.load(response)
            except urllib.error.HTTPError as fault:
                # jsonrpcs sends a fault's code as the HTTP status, with a JSON body.
                answer = json.load(fault)
        except (OSError, ValueError) as error:
            raise RPCError(f"{method}: {error}") from error
        if "error" in answer:
            raise RPCError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result")
