"""`make bench`: the ping path and the SIP edge against their own floors, in one run.

Run as `python -m tests.bench`; no module here is a pytest test file.
"""
