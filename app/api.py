"""HTTP handlers: parse the request, call the service, shape the JSON."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app import api_metrics, pings, reservations
from app.db import retried
from app.errors import ApiError
from app.models import Call, Reservation
from app.reservations import Answered

bp = Blueprint("api", __name__)

OPENAPI = (Path(__file__).parent / "openapi.json").read_bytes()
# Parameters with a meaning of their own; every other one becomes a tag.
RESERVED_PARAMS = {"key", "caller_number"}


def session():
    if "db_session" not in g:
        g.db_session = current_app.extensions["rtb.sessions"]()
    return g.db_session


def _roll_back() -> None:
    """End the request's failed transaction; a session whose rollback fails
    too (its connection cut as well) is closed, and the next try opens another."""
    if "db_session" not in g:
        return
    try:
        g.db_session.rollback()
    except DBAPIError:
        g.pop("db_session").close()


def retrying(view: Callable) -> Callable:
    """The view run again from the start, in a new transaction, when the
    database aborted its transaction or lost its connection (app.db.retried)."""

    @functools.wraps(view)
    def run(*args, **kwargs):
        return retried(lambda: view(*args, **kwargs), _roll_back)
    return run


def params() -> dict[str, Any]:
    """Query string, then a JSON or form body on top of it."""
    merged: dict[str, Any] = request.args.to_dict()
    if request.is_json:
        data = request.get_data(cache=True)
        body = request.get_json(silent=True) if data.strip() else {}
        if not isinstance(body, dict):
            raise ApiError(400, "malformed_json", "The body must be a JSON object.")
        merged.update(body)
    else:
        merged.update(request.form.to_dict())
    return merged


def scalar(values: dict[str, Any], name: str) -> str | None:
    value = values.get(name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ApiError(422, "invalid_parameter", f"`{name}` must be a string.")


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def rtb(reservation: Reservation | Answered, shielded: bool = False) -> dict[str, Any]:
    status = reservations.status_of(reservation)
    if status == "no-target":
        return {"rtb": {"uuid": reservation.uuid, "status": status}}
    body = {
        "uuid": reservation.uuid,
        "status": status,
        "retreaver_payout": float(reservation.payout),
        "retreaver_seconds": reservation.min_seconds,
        "inbound_number": reservation.inbound_number,
    }
    if status in reservations.DIALABLE:
        body["sip_address"] = f"{reservation.uuid}@{current_app.config['RTB_SIP_DOMAIN']}"
    body["expires_at"] = iso(reservation.expires_at)
    body["caller_number"] = reservation.caller_number
    if shielded:
        body["retreaver_ping_shield"] = True
    if reservation.calls:
        body["call"] = call_json(reservation.calls[-1], reservation)
    return {"rtb": body}


def call_json(call: Call, reservation: Reservation | Answered) -> dict[str, Any]:
    """The latest call of a reservation, and what it earned."""
    return {
        "via": call.via,
        "claimed_at": iso(call.claimed_at),
        "answered_at": call.answered_at and iso(call.answered_at),
        "ended_at": call.ended_at and iso(call.ended_at),
        "talk_seconds": call.talk_seconds and float(call.talk_seconds),
        "final_status": call.final_status,
        "converted": call.converted,
        "payout_earned": float(reservation.payout) if call.converted else 0.0,
    }


@bp.post("/rtbs.json")
def ping():
    started = time.perf_counter()
    values = params()
    cache, key = current_app.extensions["rtb.ping_cache"], scalar(values, "key")
    # An unknown key is refused before anything else is looked at (a cache hit after).
    cache.key(session(), key)
    tags = {name: value for name, value in values.items() if name not in RESERVED_PARAMS}
    outcome = pings.ping(session(), cache, current_app.extensions["rtb.bidder"], key,
                         scalar(values, "caller_number"), tags, started,
                         current_app.config["RTB_PING_LIMITS"])
    if isinstance(outcome, reservations.Rejection):
        return api_metrics.answer({"rtb": {"status": "rejected", "reason": outcome.reason}})
    return api_metrics.answer(rtb(outcome.reservation, outcome.shielded))


@bp.get("/rtbs/<uuid>.json")
def show(uuid: str):
    db = session()
    key = reservations.authenticate(db, scalar(request.args.to_dict(), "key"))
    return jsonify(rtb(reservations.find(db, key, uuid)))


@bp.route("/rtbs/<uuid>.json", methods=["PUT", "PATCH"])
def confirm(uuid: str):
    values = params()
    db = session()
    key = reservations.authenticate(db, scalar(values, "key"))
    if scalar(values, "status") != "confirmed":
        raise ApiError(422, "invalid_status", "Send status=confirmed to confirm a reservation.")
    reservation = reservations.find(db, key, uuid)
    reservations.confirm(db, reservation)
    return api_metrics.answer(rtb(reservation))


@bp.get("/openapi.json")
def openapi():
    return current_app.response_class(OPENAPI, mimetype="application/json")


@bp.get("/healthz")
def health():
    session().execute(text("SELECT 1"))
    return jsonify(status="ok")
