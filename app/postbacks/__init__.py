"""Conversion postbacks: each call's end, posted to its key's postback URL.

schema.sql queues one row per call end (the trigger calls_postback, in the
transaction that records the end); the worker (`python -m app.postbacks`,
started by `make run` and `make up`) claims due rows (queue.py), posts them
signed (message.py, sender.py) and retries with backoff until they are
delivered or given up (worker.py).
"""
