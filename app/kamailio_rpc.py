"""A small client for Kamailio's JSON-RPC over HTTP (jsonrpcs + xhttp).

Loopback is open to every local user, so each request also carries a
secret that only the owner of the state folder can read (SECRET_HEADER).
Each thread calls through a libcurl handle of its own (pycurl), which keeps
its connection alive between calls; close() closes them all, as does the
client being collected. Measured against urllib3 (docs/performance.md): a
push cost a ping a tenth of its worker's time through urllib3.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import threading
import weakref
from io import BytesIO
from itertools import count
from pathlib import Path

import pycurl

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
    """timeout: seconds for the whole of each call, connecting included."""

    def __init__(self, url: str, secret_file: Path, timeout: float = 0.5):
        self.url = url
        self.secret_file = secret_file
        self.timeout = timeout
        self._secret: str | None = None
        self._local = threading.local()
        # Every live thread's handle, so that closing the client closes them
        # all; a thread's own goes, with its connection, when the thread ends.
        self._handles: weakref.WeakSet[pycurl.Curl] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = weakref.finalize(self, _close_all, self._handles, self._lock)

    @classmethod
    def for_settings(cls, settings: Settings, timeout: float | None = None) -> KamailioRPC:
        """timeout: seconds; by default RTB_RPC_TIMEOUT_MS, what the app waits on each push."""
        if timeout is None:
            timeout = settings.rpc_timeout_ms / 1000
        return cls(settings.rpc_url, settings.rpc_secret_file, timeout)

    def close(self) -> None:
        self._closed()

    def _curl(self) -> pycurl.Curl:
        curl = getattr(self._local, "curl", None)
        if curl is None:
            curl = self._local.curl = pycurl.Curl()
            curl.setopt(pycurl.URL, self.url)
            # http only, no redirect followed, no signal (threads); a reply
            # is never retried, as a push may already have been applied.
            curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP)
            curl.setopt(pycurl.FOLLOWLOCATION, 0)
            curl.setopt(pycurl.NOSIGNAL, 1)
            curl.setopt(pycurl.TIMEOUT_MS, max(int(self.timeout * 1000), 1))
            with self._lock:
                self._handles.add(curl)
        return curl

    def call(self, method: str, *params: object) -> object:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params),
                           "id": next(_ids)}).encode()
        answer = BytesIO()
        try:
            # A secret we cannot read or make is one more way of not reaching Kamailio.
            self._secret = self._secret or rpc_secret(self.secret_file)
            curl = self._curl()
            curl.setopt(pycurl.HTTPHEADER, ["Content-Type: application/json",
                                            f"{SECRET_HEADER}: {self._secret}"])
            curl.setopt(pycurl.POSTFIELDS, body)
            curl.setopt(pycurl.WRITEDATA, answer)
            curl.perform()
            status = curl.getinfo(pycurl.RESPONSE_CODE)
            content_type = curl.getinfo(pycurl.CONTENT_TYPE) or ""
        except OSError as error:
            raise RPCUnreachable(f"{method}: {error}") from error
        except pycurl.error as error:
            raise RPCUnreachable(f"{method}: {error.args[-1]}") from error
        # The cfg's own refusals (403 without the secret) are plain text;
        # jsonrpcs sends a fault's code as the HTTP status, with a JSON body.
        if status != 200 and not content_type.startswith("application/json"):
            raise RPCError(f"{method}: HTTP {status}")
        try:
            reply = json.loads(answer.getvalue())
        except ValueError as error:
            raise RPCError(f"{method}: {error}") from error
        if "error" in reply:
            raise RPCError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result")


def _close_all(handles: weakref.WeakSet[pycurl.Curl], lock: threading.Lock) -> None:
    with lock:
        for curl in list(handles):
            curl.close()
        handles.clear()
