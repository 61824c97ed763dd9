"""The ping path's floors, served by the same gunicorn as the real app.

The no-op floor does nothing per request. The durable floor does the least
any ping that writes a reservation must: one INSERT and its COMMIT into the
same MariaDB, through SQLAlchemy and PyMySQL, on the app's own engine.
"""

from __future__ import annotations

from flask import Flask, jsonify, request
from sqlalchemy import text

from app.db import make_engine
from app.settings import Settings

TABLE = "bench_floor"
NO_TARGET = {"status": "rejected", "reason": "no_target"}


def _app(ping) -> Flask:
    app = Flask(__name__)
    app.post("/rtbs.json")(ping)

    @app.get("/healthz")
    def health():
        return jsonify(status="ok")

    return app


def create_app() -> Flask:
    return _app(lambda: jsonify(rtb=NO_TARGET))


def create_durable_app() -> Flask:
    """Workers read their settings from the environment, as the real app's do."""
    engine = make_engine(Settings.from_env())
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE IF NOT EXISTS {TABLE} (id BIGINT UNSIGNED AUTO_INCREMENT"
                          " PRIMARY KEY, created_at TIMESTAMP(3) NOT NULL DEFAULT"
                          " CURRENT_TIMESTAMP(3), body VARCHAR(255) NOT NULL) ENGINE=InnoDB"))
    insert = text(f"INSERT INTO {TABLE} (body) VALUES (:body)")

    def ping():
        with engine.begin() as conn:
            conn.execute(insert, {"body": request.get_data(as_text=True)[:255]})
        return jsonify(rtb=NO_TARGET)

    return _app(ping)
