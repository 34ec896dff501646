"""Reading a request defensively: a body bounded in size and in time; is its client there?

A client that trickles its body byte by byte would otherwise hold a connection (and a place
in the signup queue) for as long as it likes.
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

from aiohttp import web
from faust.web import Request, Response


def aiohttp_request(request: Request) -> web.Request:
    """The aiohttp request behind Faust's (its web driver is aiohttp)."""
    return cast(web.Request, request)


def close_after(response: Response) -> Response:
    """Close the connection once ``response`` is sent (a client that misbehaved)."""
    cast(web.StreamResponse, response).force_close()
    return response


class BodyRefused(Exception):
    """The body is too large (413) or did not arrive in time (408)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def read_body(request: web.Request, limit: int, within: float) -> bytes:
    """The whole body, at most ``limit`` bytes, all of it within ``within`` seconds."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyRefused(413, f"body is over {limit} bytes")
    deadline = time.monotonic() + within
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        try:
            chunk = await asyncio.wait_for(request.content.readany(), max(left, 0))
        except TimeoutError:
            raise BodyRefused(408, f"the body did not arrive within {within:g}s") from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise BodyRefused(413, f"body is over {limit} bytes")
        chunks.append(chunk)


def connected(request: web.Request) -> bool:
    """Whether the client is still there to read an answer."""
    transport = request.transport
    return transport is not None and not transport.is_closing()
