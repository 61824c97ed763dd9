"""The owner's log over HTTP: GET /api/v1/rtb_inbounds.json, for operators'
API tokens only (rtbctl operator token), never a publisher's key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, jsonify, request, url_for

from app import inbounds, operators
from app.api import iso, session
from app.domain_errors import Invalid, Unauthenticated
from app.errors import error_response

bp = Blueprint("log", __name__, url_prefix="/api/v1")

MAX_VALUES = 100


@bp.errorhandler(Unauthenticated)
def unauthenticated(error: Unauthenticated):
    response = error_response(401, error.code, error.message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="rtb-router"'
    return response


def token() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.args.get("api_key")


def ids(name: str) -> list[int]:
    values = request.args.getlist(f"{name}[]")
    if len(values) > MAX_VALUES or not all(v.isdigit() and len(v) <= 10 for v in values):
        raise Invalid("invalid_parameter",
                      f"`{name}[]` takes at most {MAX_VALUES} whole numbers.")
    return [int(v) for v in values]


def moment(name: str) -> datetime | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid("invalid_parameter", f"`{name}` must be an ISO 8601 time, "
                                           "e.g. 2026-11-30T08:00:00Z.") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def filters() -> inbounds.Filters:
    statuses = request.args.getlist("status[]")
    unknown = set(statuses) - set(inbounds.LOG_STATUSES)
    if unknown or len(statuses) > MAX_VALUES:
        raise Invalid("invalid_parameter",
                      f"`status[]` takes these: {', '.join(inbounds.LOG_STATUSES)}.")
    return inbounds.Filters(ids("campaign_id"), ids("publisher_id"), ids("target_id"),
                            statuses, moment("created_at_start"), moment("created_at_end"))


def cursor() -> int | None:
    raw = request.args.get("before")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise Invalid("invalid_parameter", "`before` is the cursor a Link header gave.")
    return int(raw)


def row_json(row: dict[str, Any]) -> dict[str, Any]:
    def number(value):
        return None if value is None else float(value)

    return {**row, "payout": number(row["payout"]), "duration_ms": number(row["duration_ms"]),
            "talk_seconds": number(row["talk_seconds"]), "created_at": iso(row["created_at"]),
            "confirmed_at": row["confirmed_at"] and iso(row["confirmed_at"])}


@bp.get("/rtb_inbounds.json")
def rtb_inbounds():
    db = session()
    operators.by_token(db, token())
    rows, following = inbounds.page(db, filters(), cursor())
    response = jsonify(rtb_inbounds=[row_json(row) for row in rows])
    if following is not None:
        # Without api_key: a token does not belong in URLs handed around.
        query = {name: values for name, values in request.args.lists()
                 if name not in ("api_key", "before")}
        link = url_for("log.rtb_inbounds", _external=True, before=following, **query)
        response.headers["Link"] = f'<{link}>; rel="next"'
    return response
