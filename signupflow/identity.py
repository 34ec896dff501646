"""Which process answered: every worker's HTTP answer names its pid, so whoever started it
(``signupflow up``, the bench, the tests) knows that its own worker is up, and not another
program that took the port first (``wait_http`` in :mod:`signupflow.supervisor`)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from aiohttp import web

#: The response header with the answering worker's pid.
PID_HEADER = "Signupflow-Pid"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def name_the_process(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer, errors included, carries :data:`PID_HEADER`."""
    pid = str(os.getpid())
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers[PID_HEADER] = pid
        raise
    if not response.prepared:  # a streamed answer has sent its headers already
        response.headers[PID_HEADER] = pid
    return response
