"""Counting the API's answers (app.metrics) as they leave, from the JSON they
answer with: a refusal raised anywhere counts as the error code the client sees."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, g, request

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


def count_answer(response: Response) -> Response:
    body = response.get_json(silent=True) if request.endpoint in COUNTED else None
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
