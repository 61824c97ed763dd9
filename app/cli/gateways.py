"""rtbctl gateway: the carrier gateways phone-number targets are called through.

A password is asked for (hidden, twice) or read from standard input, never
taken as an argument, and never printed: `gateway list` says only whether
a gateway has credentials.
"""

from __future__ import annotations

from typing import Any

import click

from app import gateways
from app.cli import Context, emit, json_option, main, password_stdin_option, read_password
from app.models import Gateway


def gateway_json(g: Gateway) -> dict[str, Any]:
    return {"id": g.id, "name": g.name, "host": g.host, "port": g.port,
            "transport": g.transport, "prefix": g.prefix, "username": g.username,
            "has_password": g.password is not None}


def _password(username: str | None, password_stdin: bool) -> str | None:
    if password_stdin or username:
        return read_password(password_stdin)
    return None


def gateway_options(command):
    for option in reversed([
        click.option("--transport", type=click.Choice(gateways.TRANSPORTS),
                     help="How the edge reaches it (default udp)."),
        click.option("--prefix", help="Before the number's digits; '+' (the default) sends"
                     " the E.164 number as is, '' its digits alone."),
        click.option("--username", help="Answer its 401/407 challenges as this user; '' none."),
        password_stdin_option,
        json_option,
    ]):
        command = option(command)
    return command


@main.group()
def gateway() -> None:
    """Carrier gateways: how phone-number targets are reached."""


@gateway.command("add")
@click.argument("name")
@click.argument("address", metavar="HOST[:PORT]")
@gateway_options
@click.pass_obj
def gateway_add(obj: Context, name: str, address: str, transport: str | None,
                prefix: str | None, username: str | None, password_stdin: bool,
                as_json: bool) -> None:
    """Calls for a target's number go to sip:<prefix><digits>@HOST:PORT."""
    row = obj.apply(gateways.add, name, address, transport=transport, prefix=prefix,
                    username=username, password=_password(username, password_stdin))
    emit(gateway_json(row), as_json)


@gateway.command("edit")
@click.argument("name")
@click.option("--address", metavar="HOST[:PORT]", help="Where it listens.")
@gateway_options
@click.pass_obj
def gateway_edit(obj: Context, name: str, address: str | None, transport: str | None,
                 prefix: str | None, username: str | None, password_stdin: bool,
                 as_json: bool) -> None:
    """Change the settings given; --username with its password re-keys it."""
    password = _password(username, password_stdin)

    def change(db):
        return gateways.edit(db, gateways.find(db, name), address=address, transport=transport,
                             prefix=prefix, username=username, password=password)
    emit(gateway_json(obj.apply(change)), as_json)


@gateway.command("list")
@json_option
@click.pass_obj
def gateway_list(obj: Context, as_json: bool) -> None:
    with obj.session() as db:
        emit([gateway_json(g) for g in gateways.list_all(db)], as_json)


@gateway.command("remove")
@click.argument("name")
@json_option
@click.pass_obj
def gateway_remove(obj: Context, name: str, as_json: bool) -> None:
    """Delete a gateway that no target calls through."""
    row = obj.apply(gateways.remove, name)
    emit({"id": row.id, "name": row.name, "removed": True}, as_json)
