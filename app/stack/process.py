"""A long-running child process with a pid file and a log, stoppable later.

Logs carry caller numbers: the service's own log is created mode 0600, and
the child runs with umask 077, so the logs it opens itself are 0600 too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class StartError(RuntimeError):
    """A service did not come up; the message points at its log."""


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


@dataclass
class Service:
    name: str
    argv: list[str]
    state_dir: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path | None = None
    # Set when this process started the service; `make down` runs in another.
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid() is not None

    def start(self, ready: Callable[[], bool], timeout: float = 30) -> None:
        if self.alive():
            raise StartError(f"{self.name} already runs (pid {self.pid()}); stop it first")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.touch(mode=0o600)
        # A log made by an earlier version may be world-readable.
        self.log_file.chmod(0o600)
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, cwd=self.cwd, start_new_session=True, umask=0o077,
            )
        self.pid_file.write_text(str(self.proc.pid))
        if not wait_for(lambda: not self.alive() or ready(), timeout) or not self.alive():
            self.stop()
            raise StartError(f"{self.name} did not start; see {self.log_file}:\n{self.log_tail()}")

    def stop(self, timeout: float = 15) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not wait_for(lambda: not self.alive(), timeout):
                os.killpg(pid, signal.SIGKILL)
                wait_for(lambda: not self.alive(), 5)
        self.proc = None
        self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""
