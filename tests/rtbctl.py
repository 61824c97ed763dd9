"""rtbctl as tests run it: in this process under click's CliRunner, through
the console entry point (app.cli:run) so that its exit status and one-line
errors are the operator's; or as the installed script, for one smoke test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from click.testing import CliRunner

from app import cli

SCRIPT = str(Path(sys.executable).with_name("rtbctl"))


def run(env: Mapping[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """rtbctl with these settings (RTB_* variables), stdin typed at it; the answer as
    subprocess gives it."""
    argv, sys.argv = sys.argv, ["rtbctl", *args]
    try:
        with CliRunner().isolation(input=stdin, env=dict(env)) as (out, err, _):
            try:
                cli.run()
                code = 0
            except SystemExit as exit_:
                code = exit_.code or 0
            return subprocess.CompletedProcess(args, code, out.getvalue().decode(),
                                               err.getvalue().decode())
    finally:
        sys.argv = argv


def run_json(env: Mapping[str, str], *args: str, stdin: str | None = None) -> dict:
    """rtbctl ... --json, which must succeed; its JSON answer."""
    done = run(env, *args, "--json", stdin=stdin)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def script(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess:
    """The installed console script, in a process of its own."""
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=30)
