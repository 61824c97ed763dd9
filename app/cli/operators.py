"""rtbctl operator: the accounts that may read the whole instance."""

from __future__ import annotations

import click

from app import operators
from app.cli import Context, emit, json_option, main, password_stdin_option, read_password


@main.group()
def operator() -> None:
    """Operator accounts: the owner's log over HTTP (and the admin pages)."""


@operator.command("add")
@click.argument("name")
@password_stdin_option
@json_option
@click.pass_obj
def operator_add(obj: Context, name: str, password_stdin: bool, as_json: bool) -> None:
    """Add operator NAME; only a salted scrypt hash of the password is stored.

    The password is asked for (hidden, twice) or read from standard input.
    """
    row = obj.apply(operators.add, name, read_password(password_stdin))
    emit({"id": row.id, "name": row.name}, as_json)


@operator.command("token")
@click.argument("name")
@json_option
@click.pass_obj
def operator_token(obj: Context, name: str, as_json: bool) -> None:
    """Print a new API token for operator NAME, once: only its digest is kept,
    and the operator's previous token stops working."""
    token = obj.apply(operators.issue_token, name)
    emit({"name": name, "token": token}, as_json)
    if not as_json:
        click.echo("Keep it now: it is not shown again.", err=True)
