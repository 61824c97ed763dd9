"""Where the app and Kamailio find the database: a URL from the settings, or
the private server's, whose passwords `make up` wrote under the state folder."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from app.settings import Settings

DATABASE = "rtb"


def private_dir(settings: Settings) -> Path:
    return settings.var_dir / "mariadb"


def credentials_file(settings: Settings) -> Path:
    return private_dir(settings) / "credentials.json"


def private_credentials(settings: Settings) -> dict[str, str]:
    """The private server's user names and passwords."""
    try:
        return json.loads(credentials_file(settings).read_text())
    except FileNotFoundError:
        raise RuntimeError(
            f"no private database in {private_dir(settings)}: run `make up` first, "
            "or set RTB_DATABASE_URL"
        ) from None


def private_url(settings: Settings, user: str) -> URL:
    return URL.create("mysql+pymysql", username=user,
                      password=private_credentials(settings)[user],
                      host="127.0.0.1", port=settings.db_port, database=DATABASE)


def database_url(settings: Settings) -> URL:
    if settings.database_url_override:
        return make_url(settings.database_url_override)
    return private_url(settings, "rtb")


def kamailio_database_url(settings: Settings) -> str:
    """Kamailio's db_mysql URL: its own least-privileged user on the private server."""
    if settings.kamailio_database_url_override:
        url = make_url(settings.kamailio_database_url_override)
    elif settings.database_url_override:
        url = make_url(settings.database_url_override)
    else:
        url = private_url(settings, "kamailio")
    return url.set(drivername="mysql").render_as_string(hide_password=False)
