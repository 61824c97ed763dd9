"""One postback request: a POST of the signed JSON body to the rendered URL,
within one deadline for the whole exchange, following no redirect."""

from __future__ import annotations

import asyncio

import aiohttp

USER_AGENT = "rtb-router-postback/1"


def http_session(timeout_seconds: int, concurrency: int) -> aiohttp.ClientSession:
    """No proxy from the environment, no cookies kept, no connection kept between requests."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        connector=aiohttp.TCPConnector(limit=concurrency, force_close=True),
        cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)


async def post(http: aiohttp.ClientSession, url: str, body: bytes, signature: str,
               postback_id: int) -> str | None:
    """None when the receiver took it (a 2xx answer); else why not, in a few words."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "X-RTB-Signature": signature, "X-RTB-Postback-Id": str(postback_id)}
    try:
        async with http.post(url, data=body, headers=headers, allow_redirects=False) as answer:
            if 200 <= answer.status < 300:
                return None
            return f"HTTP {answer.status}"
    except asyncio.TimeoutError:
        return "timed out"
    except aiohttp.ClientError as error:
        return f"{type(error).__name__}: {error}"
