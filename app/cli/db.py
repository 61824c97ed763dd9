"""rtbctl db current / upgrade: the schema's revision, and upgrading it by hand.

`make run` and `make up` upgrade on their own; these serve an operator who
upgrades a database first, or checks one. Alembic is imported by these
commands alone, so the others start without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy import Engine

from app.cli import Context, emit, json_option, main
from app.db import make_engine


@contextmanager
def engine_of(ctx: Context) -> Iterator[Engine]:
    engine = make_engine(ctx.settings)
    try:
        yield engine
    finally:
        engine.dispose()


@main.group()
def db() -> None:
    """The database's schema: its revision, and upgrading it."""


@db.command()
@json_option
@click.pass_obj
def current(ctx: Context, as_json: bool) -> None:
    """The revision the database is at, and the newest this version knows."""
    from app import migrations

    with engine_of(ctx) as engine:
        emit({"revision": migrations.current(engine), "head": migrations.head()}, as_json)


@db.command()
@json_option
@click.pass_obj
def upgrade(ctx: Context, as_json: bool) -> None:
    """Build or upgrade the schema to this version's (grants.sql is the administrator's)."""
    from app import migrations

    with engine_of(ctx) as engine:
        emit({"revision": migrations.upgrade(engine)}, as_json)
