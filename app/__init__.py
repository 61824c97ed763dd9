"""The RTB router's HTTP API: `gunicorn 'app:create_app()'`.

`rtbctl` imports this package too, so the web app's modules (Flask, the API)
are imported by create_app(), not here: adding a publisher need not wait for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy.orm import Session, sessionmaker

    from app.settings import Settings

MAX_BODY = 64 * 1024


def create_app(settings: Settings | None = None,
               sessions: sessionmaker[Session] | None = None) -> Flask:
    from flask import Flask, g

    from app import api, api_metrics, console, errors, log_api, targeting
    from app.bidding import Bidder
    from app.db import make_sessionmaker
    from app.ping_cache import PingCache
    from app.settings import Settings

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY, RTB_SIP_DOMAIN=settings.sip_domain,
                      RTB_PING_LIMITS=settings.ping_limits)
    app.json.sort_keys = False
    app.extensions["rtb.sessions"] = sessions or make_sessionmaker(settings)
    # Each worker's own: gunicorn forks the workers before any ping.
    app.extensions["rtb.ping_cache"] = PingCache()
    app.extensions["rtb.bidder"] = Bidder()
    errors.register(app)
    api_metrics.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(log_api.bp)
    console.init_app(app, settings)
    # Every view, each request's one place to try a transaction again.
    app.view_functions = {name: api.retrying(view) for name, view in app.view_functions.items()}
    # Load the ZIP code and area code tables now, in each worker, rather than on a first ping.
    targeting.caller_of(None, {"caller_zip": "10001"})
    targeting.caller_of("+12025550123", {})

    @app.teardown_appcontext
    def close_session(_error):
        db = g.pop("db_session", None)
        if db is not None:
            db.close()

    return app
