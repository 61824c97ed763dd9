"""Scale: the cost of an INVITE's claim, CALL rtb_confirm(), as the reservations table grows.

Kamailio's lookup is its in-memory htable, whose cost does not depend on
the table; on a miss, and always for the claim, it runs rtb_confirm() as
timed here: the same two statements, as Kamailio's own database user.
"""

from __future__ import annotations

import time

import pymysql
from sqlalchemy.engine import URL, Connection

from tests.bench.data import Caller, Market, fill_history, make_reservations
from tests.bench.report import distribution

CLAIMS = 500
DEADLOCK = 1213


def time_claims(kamailio_url: URL, caller: Caller, uuids: list[str]) -> tuple[list[float], int]:
    """Milliseconds per claim, each one CALL and one SELECT of its results, as the cfg does,
    and how many claims a deadlock refused (Kamailio would answer those 503; here the
    claim is tried again, up to three times)."""
    conn = pymysql.connect(host=kamailio_url.host, port=kamailio_url.port,
                           user=kamailio_url.username, password=kamailio_url.password,
                           database=kamailio_url.database, autocommit=True)
    took, deadlocks = [], 0
    try:
        with conn.cursor() as cursor:
            for n, uuid in enumerate(uuids):
                for attempt in range(3):
                    started = time.perf_counter()
                    try:
                        cursor.execute("CALL rtb_confirm(%s, %s, TRUE, TRUE, %s, %s, 'sip',"
                                       " @r, @d, @c, @t)",
                                       (uuid, caller.publisher_id, f"bench-scale-{uuid}", caller.ip))
                    except pymysql.err.OperationalError as error:
                        if error.args[0] != DEADLOCK or attempt == 2:
                            raise
                        deadlocks += 1
                        continue
                    cursor.execute("SELECT @r, @d")
                    result = cursor.fetchone()
                    took.append((time.perf_counter() - started) * 1000)
                    break
                if result[0] != "claimed":
                    raise RuntimeError(f"claim {n} of {uuid} answered {result[0]!r}")
    finally:
        conn.close()
    return took, deadlocks


def measure_at(conn: Connection, kamailio_url: URL, market: Market, total: int, progress) -> dict:
    """Grow the table to `total` rows of spent history, then time CLAIMS fresh claims."""
    caller = market.callers[-1]
    rows = fill_history(conn, total - CLAIMS, progress)
    uuids = make_reservations(conn, market, caller, CLAIMS)
    progress(f"scale: {CLAIMS} claims with {rows + CLAIMS:,} reservations")
    took, deadlocks = time_claims(kamailio_url, caller, uuids)
    return {"reservations": rows + CLAIMS, "claim_ms": distribution(took), "deadlocks": deadlocks}


def flatness(at: dict[str, dict]) -> float:
    """Median claim cost at the largest table over that at the smallest."""
    sizes = sorted(at.values(), key=lambda r: r["reservations"])
    low, high = sizes[0]["claim_ms"]["p50"], sizes[-1]["claim_ms"]["p50"]
    return round(high / low, 3) if low else 0.0
