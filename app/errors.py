"""One JSON error shape everywhere: {"error": {"code": ..., "message": ...}}."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from app.db import database_unreachable, try_again
from app.domain_errors import (Conflict, DomainError, Invalid, NotFound, RateLimited,
                               Unauthenticated)
from app.metrics import DATABASE_FAILURES

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


# The status each kind of refusal from the services answers with.
_DOMAIN_STATUS = {Unauthenticated: 401, NotFound: 404, Conflict: 409, Invalid: 422,
                  RateLimited: 429}

# The codes werkzeug's own errors answer with.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def error_response(status: int, code: str, message: str):
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    return response


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        response = error_response(error.status, error.code, error.message)
        response.headers.update(error.headers)
        return response

    @app.errorhandler(DomainError)
    def domain_error(error: DomainError):
        response = error_response(_DOMAIN_STATUS[type(error)], error.code, error.message)
        if isinstance(error, RateLimited):
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        response = error_response(status, _HTTP_CODES.get(status, "http_error"),
                                  error.description or "")
        if status == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(DBAPIError)
    def database_error(error: DBAPIError):
        # Unreachable, or still aborting the transaction after app.db.retried's tries.
        if database_unreachable(error) or try_again(error):
            DATABASE_FAILURES.labels("unavailable").inc()
            log.warning("database unavailable: %s", error.orig)
            response = error_response(503, "database_unavailable",
                                      "The database cannot be reached; try again shortly.")
            response.headers["Retry-After"] = "5"
            return response
        DATABASE_FAILURES.labels("error").inc()
        return unexpected(error)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unexpected error")
        return error_response(500, "internal_error", "Something went wrong on our side.")
