"""A small client for Kamailio's JSON-RPC over HTTP (jsonrpcs + xhttp).

Loopback is open to every local user, so each request also carries a
secret that only the owner of the state folder can read (SECRET_HEADER).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import urllib.error
import urllib.request
from itertools import count
from pathlib import Path

from app.settings import Settings

SECRET_HEADER = "X-RTB-RPC-Secret"
_ids = count(1)


class RPCError(RuntimeError):
    """Kamailio did not answer, or answered with a fault."""


def rpc_secret(path: Path) -> str:
    """The shared secret in `path`, made there (mode 0600) by whoever asks first.

    Written whole to a private temporary file and linked into place, so a
    racing process reads either nothing or the complete secret; the first
    link wins.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(32))
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(temporary)
    return path.read_text().strip()


class KamailioRPC:
    def __init__(self, url: str, secret_file: Path, timeout: float = 0.5):
        self.url = url
        self.secret_file = secret_file
        self.timeout = timeout
        self._secret: str | None = None

    @classmethod
    def for_settings(cls, settings: Settings, timeout: float | None = None) -> KamailioRPC:
        """timeout: seconds; by default RTB_RPC_TIMEOUT_MS, what the app waits on each push."""
        if timeout is None:
            timeout = settings.rpc_timeout_ms / 1000
        return cls(settings.rpc_url, settings.rpc_secret_file, timeout)

    def call(self, method: str, *params: object) -> object:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params),
                           "id": next(_ids)}).encode()
        try:
            # A secret we cannot read or make is one more way of not reaching Kamailio.
            self._secret = self._secret or rpc_secret(self.secret_file)
            request = urllib.request.Request(self.url, body, {"Content-Type": "application/json",
                                                              SECRET_HEADER: self._secret})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    answer = json.load(response)
            except urllib.error.HTTPError as fault:
                # The cfg's own refusals (403 without the secret) are plain text.
                if fault.headers.get_content_type() != "application/json":
                    raise RPCError(f"{method}: HTTP {fault.code} {fault.reason}") from None
                # jsonrpcs sends a fault's code as the HTTP status, with a JSON body.
                answer = json.load(fault)
        except (OSError, ValueError) as error:
            raise RPCError(f"{method}: {error}") from error
        if "error" in answer:
            raise RPCError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result")
