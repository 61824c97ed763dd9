"""rtbctl: the operator's tool. Every command prints JSON with --json.

The commands live in market.py (publishers, campaigns, targets, keys),
reports.py (reservations, pings) and db.py (the schema); this module holds
what they share.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from sqlalchemy.exc import DBAPIError

from app.db import database_unreachable, make_sessionmaker, retried
from app.domain_errors import DomainError
from app.settings import Settings, SettingsError

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
password_stdin_option = click.option("--password-stdin", is_flag=True,
                                     help="Read the password from the first line of standard input.")


def read_password(from_stdin: bool) -> str:
    """Asked for (hidden, twice) or read from standard input, never taken as an
    argument, where `ps` and shell history would see it."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def emit(data: dict[str, Any] | list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, default=str))
    elif isinstance(data, list):
        for row in data:
            click.echo("  ".join(f"{name}={value}" for name, value in row.items()))
    else:
        for name, value in data.items():
            click.echo(f"{name}: {value}")


class Context:
    def __init__(self):
        self.settings = Settings.from_env()
        self._sessions = None

    def session(self):
        if self._sessions is None:
            self._sessions = make_sessionmaker(self.settings)
        return self._sessions()

    def apply(self, change, *args, **kwargs):
        """Run one change in one transaction, again if the database aborted it
        (app.db.retried); Kamailio is told after the commit."""
        def once():
            with self.session() as db:
                row = change(db, *args, **kwargs)
                db.commit()
                return row
        return retried(once)


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Operate the RTB router: publishers, campaigns, targets, keys, reservations."""
    try:
        ctx.obj = Context()
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


def run() -> None:
    """Console entry point: operator mistakes print one line, not a traceback."""
    try:
        main(standalone_mode=False)
    except DomainError as error:
        click.echo(f"error: {error.message}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except DBAPIError as error:
        if database_unreachable(error):
            click.echo("error: cannot reach the database (is the stack up? see RTB_DATABASE_URL)",
                       err=True)
        else:
            click.echo(f"error: the database refused: {error.orig}", err=True)
        sys.exit(1)
    except RuntimeError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


from app.cli import db, gateways, market, operators, postbacks, reports, usage  # noqa: E402,F401  (they register their commands on main)
