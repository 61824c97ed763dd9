"""The app's Prometheus metrics: pings by outcome and reason and how long they
took, pass-through buyers' answers by outcome, confirms by result, requests the database failed, and the Kamailio
pushes that failed.

Each gunicorn worker writes its own files under PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode); the stack's exporter
(app/stack/metrics.py) adds them up on RTB_METRICS_PORT. No Flask here: the
notifier counts its failures for rtbctl too.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PINGS = Counter("rtb_pings", "Pings answered, by outcome (reserved, confirmed, duplicate, "
                "rejected, error) and reason (a rejection's reason or an error's code)",
                ["outcome", "reason"])
PING_SECONDS = Histogram("rtb_ping_seconds", "Seconds from a ping's arrival to its answer",
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
BIDS = Counter("rtb_bids", "Pass-through buyers asked, by what they answered: bid, no_bid, "
               "over_max, timeout, error", ["outcome"])
CONFIRMS = Counter("rtb_confirms", "Confirms (PUT/PATCH /rtbs/<uuid>.json), by the status "
                   "answered or the error's code", ["result"])
DATABASE_FAILURES = Counter("rtb_database_failures", "Requests the database failed: "
                            "unavailable (down or gone away) or error (it refused)", ["kind"])
KAMAILIO_PUSH_FAILURES = Counter("rtb_kamailio_push_failures", "Changes Kamailio was not told "
                                 "of after a commit (it reads the database instead), by RPC "
                                 "method", ["method"])
