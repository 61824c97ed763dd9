"""Counting the API's answers (app.metrics) as they leave, from the JSON they
answer with: a refusal raised anywhere counts as the error code the client sees.
A view's own answer is counted from the dict it answered with (answer()), not
read back from the response: that parse was a fiftieth of a ping's worker time."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, g, jsonify, request

from app.metrics import CONFIRMS, PING_SECONDS, PINGS

COUNTED = ("api.ping", "api.confirm")


def ping_labels(body: dict[str, Any]) -> tuple[str, str]:
    if "error" in body:
        return "error", body["error"]["code"]
    rtb = body["rtb"]
    if rtb["status"] == "rejected":
        return "rejected", rtb["reason"]
    if rtb.get("retreaver_ping_shield"):
        return "duplicate", ""
    return rtb["status"], ""


def confirm_result(body: dict[str, Any]) -> str:
    return body["error"]["code"] if "error" in body else body["rtb"]["status"]


def _started() -> None:
    g.metrics_started = time.perf_counter()


def answer(body: dict[str, Any]) -> Response:
    """A counted view's JSON answer."""
    g.metrics_answer = body
    return jsonify(body)


def count_answer(response: Response) -> Response:
    if request.endpoint not in COUNTED:
        return response
    body = g.pop("metrics_answer", None)
    if body is None:
        body = response.get_json(silent=True)
    if not isinstance(body, dict):
        return response
    if request.endpoint == "api.ping":
        PINGS.labels(*ping_labels(body)).inc()
        PING_SECONDS.observe(time.perf_counter() - g.metrics_started)
    else:
        CONFIRMS.labels(confirm_result(body)).inc()
    return response


def init_app(app: Flask) -> None:
    app.before_request(_started)
    app.after_request(count_answer)
