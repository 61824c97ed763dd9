"""A small client for Kamailio's JSON-RPC over HTTP (jsonrpcs + xhttp).

Loopback is open to every local user, so each request also carries a
secret that only the owner of the state folder can read (SECRET_HEADER).
A client keeps its connections alive between calls (a new one per push cost
a ping a tenth of its worker's time) and closes them with close(), or when
it is collected.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import weakref
from itertools import count
from pathlib import Path

import urllib3
from urllib3.exceptions import HTTPError

from app.settings import Settings

SECRET_HEADER = "X-RTB-RPC-Secret"
_ids = count(1)


class RPCError(RuntimeError):
    """Kamailio did not answer, or answered with a fault."""


class RPCUnreachable(RPCError):
    """Kamailio could not be reached at all (refused, timed out, cut off)."""


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
    """connections: how many are kept alive for threads calling at once."""

    def __init__(self, url: str, secret_file: Path, timeout: float = 0.5, connections: int = 1):
        self.url = url
        self.secret_file = secret_file
        self.timeout = timeout
        self._secret: str | None = None
        # A reply is never retried (a push may already have been applied), and
        # a connection Kamailio closed is found closed before it is reused.
        self._http = urllib3.connection_from_url(url, maxsize=connections, retries=False,
                                                 timeout=urllib3.Timeout(timeout))
        self._path = urllib3.util.parse_url(url).request_uri
        self._closed = weakref.finalize(self, self._http.close)

    @classmethod
    def for_settings(cls, settings: Settings, timeout: float | None = None,
                     connections: int = 1) -> KamailioRPC:
        """timeout: seconds; by default RTB_RPC_TIMEOUT_MS, what the app waits on each push."""
        if timeout is None:
            timeout = settings.rpc_timeout_ms / 1000
        return cls(settings.rpc_url, settings.rpc_secret_file, timeout, connections)

    def close(self) -> None:
        self._closed()

    def call(self, method: str, *params: object) -> object:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params),
                           "id": next(_ids)}).encode()
        try:
            # A secret we cannot read or make is one more way of not reaching Kamailio.
            self._secret = self._secret or rpc_secret(self.secret_file)
            response = self._http.urlopen("POST", self._path, body=body, headers={
                "Content-Type": "application/json", SECRET_HEADER: self._secret})
            # The cfg's own refusals (403 without the secret) are plain text;
            # jsonrpcs sends a fault's code as the HTTP status, with a JSON body.
            if response.status != 200 and not response.headers.get(
                    "content-type", "").startswith("application/json"):
                raise RPCError(f"{method}: HTTP {response.status} {response.reason}")
            answer = json.loads(response.data)
        except (OSError, HTTPError) as error:
            raise RPCUnreachable(f"{method}: {error}") from error
        except ValueError as error:
            raise RPCError(f"{method}: {error}") from error
        if "error" in answer:
            raise RPCError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result")
