"""The ping path's floor: the same gunicorn serving a Flask app that does nothing."""

from __future__ import annotations

from flask import Flask, jsonify


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/rtbs.json")
    def ping():
        return jsonify(rtb={"status": "rejected", "reason": "no_target"})

    @app.get("/healthz")
    def health():
        return jsonify(status="ok")

    return app
