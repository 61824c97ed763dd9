"""The postback worker: claims due postbacks, sends up to BATCH at once, and
records every outcome; `python -m app.postbacks` runs it until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import aiohttp
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from app.db import make_sessionmaker, retried
from app.postbacks import message, queue, sender
from app.settings import Settings

BATCH = 50
IDLE_SECONDS = 1.0
log = logging.getLogger("rtb.postbacks")


class Worker:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]):
        self.times = settings.postbacks
        self.sessions = sessions
        # Written after each round that reached the database: the stack's readiness check.
        self.heartbeat = settings.var_dir / "postbacks" / "heartbeat"
        # A claim outlives the request's deadline and the recording of its
        # outcome; if it did not, the row would only be sent once more.
        self.lease_seconds = self.times.timeout_seconds + 15

    async def run(self, stop: asyncio.Event) -> None:
        """Keep up to BATCH postbacks in flight, claiming more as each one ends:
        a slow receiver holds up its own postbacks, not the others'. On stop,
        those in flight are dropped: they are due again when their claims run out."""
        async with sender.http_session(self.times.timeout_seconds, BATCH) as http:
            stopping = asyncio.create_task(stop.wait())
            sending: set[asyncio.Task] = set()
            while not stop.is_set():
                room = BATCH - len(sending)
                due = await self._claim_safely(room) if room else []
                sending |= {asyncio.create_task(self._attempt(http, item)) for item in due}
                if not room or len(due) < room:
                    await asyncio.wait({stopping, *sending}, timeout=IDLE_SECONDS,
                                       return_when=asyncio.FIRST_COMPLETED)
                sending = {task for task in sending if not task.done()}
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)

    async def _claim_safely(self, room: int) -> list[queue.Due]:
        try:
            return await asyncio.to_thread(self._claim, room)
        except DBAPIError as error:
            log.warning("database: %s", error.orig)
            return []

    def _claim(self, room: int) -> list[queue.Due]:
        with self.sessions() as db:
            due = queue.claim(db, room, self.lease_seconds)
        _touch(self.heartbeat)
        return due

    async def _attempt(self, http: aiohttp.ClientSession, due: queue.Due) -> None:
        """Deliver one; whatever goes wrong, the others go on, and this one is
        due again when its claim runs out."""
        try:
            await self._deliver(http, due)
        except Exception:
            log.exception("postback %s, attempt %s", due.id, due.attempts)

    async def _deliver(self, http: aiohttp.ClientSession, due: queue.Due) -> None:
        problem = _unsendable(due)
        final = problem is not None
        if not final:
            body = message.body(due.end)
            problem = await sender.post(http, message.url(due.template, due.end), body,
                                        message.signature(due.secret, body), due.id)
            if problem is None:
                await asyncio.to_thread(self._record, queue.delivered, due.id)
                return
        log.info("postback %s, attempt %s: %s", due.id, due.attempts, problem)
        await asyncio.to_thread(self._record, queue.failed, due, problem,
                                message.retry_wait(due.attempts, self.times.retry_seconds),
                                self.times.give_up_seconds, final)

    def _record(self, outcome, *args) -> None:
        """In a transaction of its own, run again if the database aborts it
        (app.db.retried): a delivery not recorded would be sent again."""
        def once():
            with self.sessions() as db:
                outcome(db, *args)
        retried(once)


def _unsendable(due: queue.Due) -> str | None:
    """Why this postback can never be sent, or None."""
    if due.end is None:
        return "its call is no longer kept"
    if not due.template:
        return "its key has no postback URL any more"
    if not due.secret:
        return "its key has no postback secret (rtbctl key edit --new-postback-secret)"
    try:
        # Checked when set, but a key's row may have been written by hand.
        message.check_template(due.template)
        message.check_url(message.url(due.template, due.end))
    except ValueError as error:
        return str(error)
    return None


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings.from_env()
    worker = Worker(settings, make_sessionmaker(settings))

    async def serve() -> None:
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        log.info("postback worker started")
        await worker.run(stop)

    asyncio.run(serve())
    return 0
