"""rtbctl postbacks: what the postback worker has still to deliver, or gave up."""

from __future__ import annotations

import dataclasses

import click

from app.cli import Context, emit, json_option, main
from app.postbacks import queue


@main.command("postbacks")
@click.option("--failed", "failed_only", is_flag=True,
              help="Those given up (retried past RTB_POSTBACK_GIVE_UP_SECONDS, or unsendable).")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@json_option
@click.pass_obj
def postbacks(obj: Context, failed_only: bool, limit: int, as_json: bool) -> None:
    """Postbacks not delivered yet, next due first; with --failed, those given up."""
    with obj.session() as db:
        listed = queue.pending_or_failed(db, failed_only, limit)
    emit([dataclasses.asdict(row) for row in listed], as_json)
