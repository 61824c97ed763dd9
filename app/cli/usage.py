"""rtbctl usage: the counters caps are decided by, against a recount from history."""

from __future__ import annotations

import sys

import click

from app import usage
from app.cli import Context, emit, json_option, main


@main.command("usage")
@click.option("--check", "action", flag_value="check", default=True,
              help="Print each target whose counters differ from history (exit 1 if any).")
@click.option("--repair", "action", flag_value="repair",
              help="Rewrite every target's counters from history.")
@json_option
@click.pass_obj
def usage_command(obj: Context, action: str, as_json: bool) -> None:
    """Check the usage counters against a recount from history, or repair them."""
    with obj.session() as db:
        if action == "repair":
            emit({"repaired_targets": usage.repair(db)}, as_json)
            return
        drifted = usage.drift(db)
    emit(drifted, as_json)
    if drifted:
        sys.exit(1)
