"""Protected views and defensive request reading, on a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import http.server
import os
import threading
import urllib.error
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from signupflow.http_input import BodyRefused, read_body
from signupflow.identity import PID_HEADER, name_the_process
from signupflow.kafka_client import Secret
from signupflow.settings import load_settings
from signupflow.web_auth import (
    WebTokenMissing,
    authorized,
    check_exposure,
    get_json,
    middleware,
)

TOKEN = Secret("the-token")


async def ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(token: Secret | None) -> TestServer:
    app = web.Application(middlewares=[name_the_process, middleware(token)])  # as create_app
    for path in ("/health", "/ready", "/signup", "/console", "/metrics", "/partners/",
                 "/console/data", "/accounts/{uuid}", "/accountsx"):
        app.router.add_get(path, ok)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def protected() -> AsyncIterator[TestServer]:
    server = await serve(TOKEN)
    yield server
    await server.close()


async def status(server: TestServer, path: str, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as session, session.get(
            server.make_url(path), headers=headers or {}) as resp:
        return resp.status


@pytest.mark.parametrize("path", ["/metrics", "/partners/", "/console/data", "/accountsx"])
async def test_a_view_needs_the_token(protected: TestServer, path: str) -> None:
    assert await status(protected, path) == 401
    assert await status(protected, path, {"Authorization": "Bearer wrong"}) == 401
    assert await status(protected, path, {"Authorization": "Basic the-token"}) == 401
    assert await status(protected, path, {"Authorization": "Bearer the-token"}) == 200
    assert await status(protected, path, {"Authorization": "bearer  the-token "}) == 200


@pytest.mark.parametrize("path", ["/health", "/ready", "/signup", "/console",
                                  "/accounts/3f2b8c1e-9a4d-4b6e-8f1a-2c3d4e5f6a7b"])
async def test_probes_the_signup_api_and_the_console_page_stay_open(
        protected: TestServer, path: str) -> None:
    assert await status(protected, path) == 200


async def test_without_a_token_everything_is_open() -> None:
    server = await serve(None)
    try:
        assert await status(server, "/metrics") == 200
    finally:
        await server.close()


def test_the_comparison_needs_the_whole_token() -> None:
    assert not authorized("Bearer the-toke", TOKEN)
    assert not authorized("Bearer the-token-and-more", TOKEN)
    assert not authorized(None, TOKEN)


def test_a_worker_beyond_loopback_refuses_to_start_without_a_token() -> None:
    with pytest.raises(WebTokenMissing, match="SIGNUPFLOW_WEB_TOKEN"):
        check_exposure(load_settings({"SIGNUPFLOW_WEB_HOST": "0.0.0.0"}))
    check_exposure(load_settings({"SIGNUPFLOW_WEB_HOST": "0.0.0.0",
                                  "SIGNUPFLOW_WEB_TOKEN": "t"}))
    for host in ("127.0.0.1", "localhost", "::1"):
        check_exposure(load_settings({"SIGNUPFLOW_WEB_HOST": host}))


# --- reading a body -------------------------------------------------------------------------

async def body_server(limit: int, within: float) -> TestServer:
    async def echo(request: web.Request) -> web.Response:
        try:
            body = await read_body(request, limit, within)
        except BodyRefused as exc:
            return web.Response(status=exc.status, text=str(exc))
        return web.Response(text=f"{len(body)}")

    app = web.Application()
    app.router.add_post("/", echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def raw_post(server: TestServer, head: bytes, chunks: list[bytes], pause: float
                   ) -> tuple[bytes, int]:
    """Send a request by hand, its body in ``chunks`` ``pause`` seconds apart, until the
    answer comes; the answer, and how many chunks were sent by then."""
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    sent = 0

    async def trickle() -> None:
        nonlocal sent
        writer.write(head)
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            sent += 1
            await asyncio.sleep(pause)

    sending = asyncio.create_task(trickle())
    try:
        answer = await asyncio.wait_for(reader.read(4096), 10)
        return answer, sent
    finally:
        sending.cancel()
        writer.close()


async def test_a_body_trickled_byte_by_byte_is_cut_off_after_the_timeout() -> None:
    server = await body_server(limit=1000, within=0.5)
    try:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        answer, sent = await raw_post(server, head, [b"x"] * 100, pause=0.05)
    finally:
        await server.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert sent < 100  # cut off while the client was still trickling


async def test_a_body_over_the_limit_is_refused_declared_or_chunked() -> None:
    server = await body_server(limit=10, within=5)
    try:
        declared, _ = await raw_post(
            server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", [b"x" * 11], 0)
        chunked, _ = await raw_post(
            server, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            [b"6\r\nxxxxxx\r\n", b"6\r\nxxxxxx\r\n", b"0\r\n\r\n"], 0.05)
        fits, _ = await raw_post(
            server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", [b"x" * 10], 0)
    finally:
        await server.close()
    assert declared.startswith(b"HTTP/1.1 413"), declared
    assert chunked.startswith(b"HTTP/1.1 413"), chunked
    assert fits.startswith(b"HTTP/1.1 200") and fits.endswith(b"10"), fits


class _Recovering(http.server.BaseHTTPRequestHandler):
    """503 for the first ``unavailable`` requests (a table recovering), then a JSON answer."""

    unavailable = 2
    asked = 0

    def do_GET(self) -> None:
        type(self).asked += 1
        status = 503 if type(self).asked <= type(self).unavailable else 200
        body = b'{"error": "recovering"}' if status == 503 else b'{"count": 1}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.mark.parametrize(("wait", "answer"), [(10.0, {"count": 1}), (0.0, 503)])
def test_a_view_that_answers_503_is_asked_again_for_a_while(wait: float,
                                                            answer: object) -> None:
    _Recovering.asked = 0
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recovering)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/partners/"
    try:
        if answer == 503:
            with pytest.raises(urllib.error.HTTPError) as failed:
                get_json(url, None, unavailable_for=wait)
            failed.value.close()
            assert failed.value.code == 503 and _Recovering.asked == 1
        else:
            assert get_json(url, None, unavailable_for=wait) == answer
            assert _Recovering.asked == 3
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path, code", [("/metrics", 401), ("/health", 200)])
async def test_every_answer_names_the_workers_pid(protected: TestServer, path: str,
                                                  code: int) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            protected.make_url(path)) as resp:
        assert (resp.status, resp.headers.get(PID_HEADER)) == (code, str(os.getpid()))
