"""Protected views: every web view but ``/health`` and ``/ready`` asks for a bearer token.

A worker reachable from other hosts (its web host is not a loopback address) refuses to start
without ``SIGNUPFLOW_WEB_TOKEN``: the console, the partner list and the metrics would otherwise
be open to anyone who reaches the port. On loopback the views stay open unless a token is set.
``POST /signup`` and ``/accounts/{uuid}`` are the public API and stay open (they shed load
themselves; an account is opened by its own email and password). The workers, the CLI
and the console send the token with every request they make to a view.
"""

from __future__ import annotations

import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from signupflow.domain.account import ACCOUNTS
from signupflow.kafka_client import Secret
from signupflow.settings import PREFIX, Settings

#: What needs no token: probes (orchestrators have none), the public signup API, and the
#: console's page itself (a browser cannot send a token when it opens a page; the page holds
#: no data, and asks for the token before it reads any).
OPEN_PATHS = frozenset({"/health", "/ready", "/signup", "/console"})
#: ...and the public account API under these prefixes, authenticated by the account's own
#: credentials (HTTP Basic), not by the token.
OPEN_PREFIXES = (ACCOUNTS,)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebTokenMissing(RuntimeError):
    """A worker would serve its views beyond this machine with no token."""


def check_exposure(settings: Settings) -> None:
    """Refuse a web host that is not loopback without a token, naming the way out."""
    if not settings.web_on_loopback and settings.web_token is None:
        raise WebTokenMissing(
            f"{PREFIX}WEB_HOST is {settings.web_host!r}, reachable from other hosts, and no "
            f"{PREFIX}WEB_TOKEN (or {PREFIX}WEB_TOKEN_FILE) is set: the views (console, "
            "partners, metrics) would be open to anyone; set a token, or bind 127.0.0.1")


def authorization(token: Secret | None) -> dict[str, str]:
    """The header a client of the views sends (none when no token is set)."""
    return {"Authorization": f"Bearer {token.reveal()}"} if token else {}


def get_json(url: str, token: Secret | None, timeout: float = 30,
             unavailable_for: float = 20) -> Any:
    """``GET url`` of a view, with the token; its JSON answer (raises OSError).

    A view answers 503 while its table recovers or a rebalance moves its partitions (seconds,
    after a start): that is asked again, every second, for up to ``unavailable_for`` seconds,
    before the 503 is raised."""
    request = urllib.request.Request(url, headers=authorization(token))
    deadline = time.monotonic() + unavailable_for
    while True:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() >= deadline:
                raise
            exc.close()
            time.sleep(1)


def authorized(header: str | None, token: Secret) -> bool:
    """Whether an ``Authorization`` header carries the token (compared in constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.reveal().encode())


def middleware(token: Secret | None) -> Any:
    """An aiohttp middleware answering 401 to a request without the token (none: open)."""

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None or request.path in OPEN_PATHS or request.path.startswith(
                OPEN_PREFIXES) or authorized(
                request.headers.get("Authorization"), token):
            return await handler(request)
        return web.json_response(
            {"error": "this view needs the web token: send 'Authorization: Bearer <token>' "
                      f"({PREFIX}WEB_TOKEN)"},
            status=401, headers={"WWW-Authenticate": 'Bearer realm="signupflow"'})

    return require_token
