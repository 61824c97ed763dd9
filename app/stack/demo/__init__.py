"""`make demo`: the whole stack with a demo market and live traffic.

environment.py  the demo's own state folder and ports
market.py       the demo market, seeded through app.admin (idempotent)
sipp.py         SIPp as the demo's buyers and as its publisher's calls
traffic.py      a ping over HTTP and a call through the edge, every couple of seconds
__main__.py     `python -m app.stack.demo`: start, seed, run until Ctrl-C, stop
"""
