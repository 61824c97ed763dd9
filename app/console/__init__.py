"""The operator's web pages at /admin: the RTB log, reservations, targets and
a dashboard, server-rendered, for operator accounts only (rtbctl operator add).

Sessions are Flask's signed cookies, keyed by a secret made once under the
state folder; every form carries Flask-WTF's CSRF token. Templates and CSS
ship inside the package, and the charts are inline SVG: no script, nothing
fetched from the internet.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import generate_csrf

from app.settings import Settings


def secret_key(path: Path) -> bytes:
    """The key in `path`, made there first if missing. Written whole to a file
    of its own, then linked into place: of gunicorn's workers starting at once,
    one links its key and the others read that one, never a half-written file."""
    if path.exists():
        return path.read_bytes()
    draft = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_hex(32).encode())
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_bytes()


def init_app(app: Flask, settings: Settings) -> None:
    from app.console import auth, pages  # noqa: F401  (their routes join the blueprint)
    from app.console.blueprint import bp

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    app.config.update(
        SECRET_KEY=secret_key(settings.admin_secret_file),
        SESSION_COOKIE_NAME="rtb_admin",
        SESSION_COOKIE_PATH="/admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.admin_secure_cookie,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
    )
    app.session_interface = _CookieSessions()
    app.jinja_env.globals["csrf_token"] = generate_csrf
    app.register_blueprint(bp)


class _CookieSessions(SecureCookieSessionInterface):
    """Flask's signed cookie sessions, without making the signer for a request
    that brings no cookie (every API call): a fiftieth of a ping's worker time."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)
