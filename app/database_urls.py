"""Where the app and Kamailio find the database: URLs from the settings, a
cluster's nodes found under the state folder, or the private server's, whose
passwords `make up` wrote under the state folder.

Lists are in writer-preference order: the app and Kamailio write through the
first node that is up and synced (app/db.py, kamailio.cfg's db_cluster).
"""

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


def _cluster(settings: Settings) -> tuple[dict, dict[str, str]] | None:
    """topology.json and credentials.json of the cluster `make cluster-up` runs
    under this state folder, or None when there is none."""
    try:
        topology = json.loads(settings.cluster_topology_file.read_text())
    except FileNotFoundError:
        return None
    cluster_dir = settings.cluster_topology_file.parent
    try:
        credentials = json.loads((cluster_dir / "credentials.json").read_text())
    except FileNotFoundError:
        raise RuntimeError(f"{cluster_dir} has a topology.json but no "
                           "credentials.json: run `make cluster-up` again") from None
    return topology, credentials


def _cluster_urls(settings: Settings, user: str) -> list[URL] | None:
    cluster = _cluster(settings)
    if cluster is None:
        return None
    topology, credentials = cluster
    return [URL.create("mysql+pymysql", username=user, password=credentials[user],
                       host="127.0.0.1", port=node["port"], database=DATABASE)
            for node in topology["db"]]


def _app_urls(settings: Settings) -> list[URL] | None:
    """The URLs the settings or a cluster give; None means the private server."""
    if settings.database_urls_override:
        return [make_url(url) for url in settings.database_urls_override]
    if settings.database_url_override:
        return [make_url(settings.database_url_override)]
    return _cluster_urls(settings, "rtb")


def database_urls(settings: Settings) -> list[URL]:
    """The app's database nodes, in writer-preference order."""
    return _app_urls(settings) or [private_url(settings, "rtb")]


def database_url(settings: Settings) -> URL:
    """The first node: for work on one server, such as upgrading the schema."""
    return database_urls(settings)[0]


def kamailio_database_urls(settings: Settings) -> list[str]:
    """Kamailio's db_mysql URLs, in writer-preference order: its own
    least-privileged user, or else the app's URLs."""
    if settings.kamailio_database_urls_override:
        urls = [make_url(url) for url in settings.kamailio_database_urls_override]
    elif settings.kamailio_database_url_override:
        urls = [make_url(settings.kamailio_database_url_override)]
    elif settings.database_urls_override or settings.database_url_override:
        urls = _app_urls(settings)
    else:
        urls = _cluster_urls(settings, "kamailio") or [private_url(settings, "kamailio")]
    return [url.set(drivername="mysql").render_as_string(hide_password=False) for url in urls]


def kamailio_database_url(settings: Settings) -> str:
    """Kamailio's first database node (the only one on a single machine)."""
    return kamailio_database_urls(settings)[0]


def edges(settings: Settings) -> list[str]:
    """The JSON-RPC URLs of every Kamailio edge the app tells of each change."""
    if settings.edges_override:
        return list(settings.edges_override)
    if not (settings.database_urls_override or settings.database_url_override):
        cluster = _cluster(settings)
        if cluster is not None:
            return [edge["rpc"] for edge in cluster[0]["sip"]]
    return [settings.rpc_url]
