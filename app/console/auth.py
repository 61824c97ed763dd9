"""Logging in and out; every other admin page wants a logged-in operator, and
every form a valid CSRF token."""

from __future__ import annotations

from flask import g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import ValidationError, validate_csrf

from app import logins
from app.api import session as db_session
from app.console.blueprint import bp
from app.domain_errors import NotFound, RateLimited, Unauthenticated
from app.models import Operator

OPEN = {"console.login", "console.static"}
# Nothing but this site's own files, in no other site's frame, kept by no cache.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@bp.before_request
def check_csrf():
    if request.method != "POST":
        return None
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError as error:
        return render_template("refused.html", message=f"Refused: {error}"), 400
    return None


@bp.before_request
def require_operator():
    if request.endpoint in OPEN:
        return None
    operator_id = session.get("operator")
    g.operator = db_session().get(Operator, operator_id) if operator_id else None
    if g.operator is None:
        session.clear()
        return redirect(url_for("console.login", next=request.full_path))
    return None


@bp.after_request
def protect(response):
    response.headers.update(HEADERS)
    return response


@bp.errorhandler(NotFound)
def not_found(error: NotFound):
    return render_template("refused.html", message=error.message), 404


def local_path(target: str | None) -> str:
    """Where to go after logging in: a path on this site's /admin, never elsewhere."""
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return url_for("console.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next"))
    db = db_session()
    name = request.form.get("name", "")
    try:
        operator = logins.log_in(db, name, request.form.get("password", ""),
                                 request.remote_addr or "")
    except (Unauthenticated, RateLimited) as refused:
        db.commit()
        status, headers = (429, {"Retry-After": str(refused.retry_after)}) \
            if isinstance(refused, RateLimited) else (401, {})
        return render_template("login.html", error=refused.message, name=name,
                               next=request.form.get("next")), status, headers
    db.commit()
    session.clear()
    session.permanent = True
    session["operator"] = operator.id
    return redirect(local_path(request.form.get("next")))


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("console.login"))
