"""The RTB router's HTTP API: `gunicorn 'app:create_app()'`."""

from __future__ import annotations

import zipcodes
from flask import Flask, g
from sqlalchemy.orm import Session, sessionmaker

from app import api, errors
from app.db import make_sessionmaker
from app.settings import Settings

MAX_BODY = 64 * 1024


def create_app(settings: Settings | None = None,
               sessions: sessionmaker[Session] | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY, RTB_SIP_DOMAIN=settings.sip_domain,
                      RTB_PING_LIMITS=settings.ping_limits)
    app.json.sort_keys = False
    app.extensions["rtb.sessions"] = sessions or make_sessionmaker(settings)
    errors.register(app)
    app.register_blueprint(api.bp)
    # Load the ZIP code table now, in each worker, rather than on a first ping.
    zipcodes.matching("10001")

    @app.teardown_appcontext
    def close_session(_error):
        db = g.pop("db_session", None)
        if db is not None:
            db.close()

    return app
