"""The live console (``GET /console`` on the batch port) in headless Chromium: its numbers
equal the databases' counts (the signups-per-minute chart's totals and bars member.db's
profiles by role), the chart has a time axis and counts, a stage that is not ready says so in
words (not by colour alone), user text is shown as text, and screenshots are kept: the one in
docs/console.png is made here, of realistic data under load."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from signupflow.client import post_signups
from signupflow.console import PAGE
from signupflow.domain.fake import fake_signups
from tests.integration.browser import dump_dom, screenshot
from tests.integration.system import System

HOSTILE = "<img src=x onerror=alert(1)>"
#: Where the screenshot is kept (a test artifact): ``SIGNUPFLOW_ARTIFACTS``, by default
#: ``var/test-artifacts`` of the checkout.
ARTIFACTS = Path(os.environ.get("SIGNUPFLOW_ARTIFACTS") or "var/test-artifacts")


class Stages(HTMLParser):
    """The text of each ``dd``, ``p`` and ``div`` of the ``#stage-<name>`` sections, by class,
    and each section's class; the chart's totals (``strong#minute-*``), as stage
    ``chart``; the texts of the chart's axes and the titles of its bars."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, str]] = {}
        self.classes: dict[str, str] = {}
        self.axes: dict[str, list[str]] = {"x-axis": [], "y-axis": []}
        self.bars: list[str] = []
        self.legend = ""
        self.images = 0
        self._stage = ""
        self._field = ""
        self._axis = ""
        self._in: str = ""
        self._svg = False
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "img":
            self.images += 1
        self._svg = self._svg or tag == "svg"
        if tag == "section" and (attr.get("id") or "").startswith("stage-"):
            self._stage = (attr["id"] or "").removeprefix("stage-")
            self.figures[self._stage] = {}
            self.classes[self._stage] = attr.get("class") or ""
        elif tag in ("dd", "p", "div") and self._stage:
            self._field = attr.get("class") or ""
        elif tag == "g" and attr.get("class") in self.axes:
            self._axis = attr["class"] or ""
        elif tag == "text" and self._axis:
            self._in = "axis"
            self.axes[self._axis].append("")
        elif tag == "title" and self._svg:
            self._in = "title"
            self.bars.append("")
        elif attr.get("id") == "frame-legend":
            self._in = "legend"
        elif tag == "strong" and (attr.get("id") or "").startswith("minute-"):
            self._stage, self._field = "chart", attr["id"] or ""
            self.figures.setdefault("chart", {})

    def handle_data(self, data: str) -> None:
        if self._field:
            self.figures[self._stage][self._field] = data.strip()
        elif self._in == "axis":
            self.axes[self._axis][-1] += data
        elif self._in == "title":
            self.bars[-1] += data
        elif self._in == "legend":
            self.legend += data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("dd", "p", "div"):
            self._field = ""
            if tag == "p" and self._in == "legend":
                self._in = ""
        elif tag in ("section", "strong"):
            self._stage = self._field = ""
        elif tag == "g":
            self._axis = ""
        elif tag == "svg":
            self._svg = False
        elif tag in ("text", "title"):
            self._in = ""

    def bar_totals(self) -> dict[str, int]:
        """Users and partners over every bar's title (``10:42: users 3, partners 1``)."""
        found = [re.fullmatch(r"\d\d:\d\d: users (\d+), partners (\d+)", t) for t in self.bars]
        assert all(found), self.bars
        return {"USER": sum(int(m[1]) for m in found if m),
                "PARTNER": sum(int(m[2]) for m in found if m)}


def console(system: System, query: str = "") -> tuple[str, Stages]:
    """The console's DOM after its scripts ran (and what it shows); ``query``: its URL's."""
    dom = dump_dom(f"{system.url('batch')}/console{query}", system.root / "chromium", 60,
                   "--virtual-time-budget=5000")
    return dom, Stages(dom)


@contextmanager
def steady_signups(system: System, per_second: int, seed: int) -> Iterator[list[int]]:
    """Realistic signups posted at a steady rate in the background while inside; yields the
    running count of those accepted."""
    accepted = [0]
    stop = threading.Event()
    bodies = fake_signups(10_000, 0.3, seed=seed)

    def post() -> None:
        sent = 0
        while not stop.is_set():
            started = time.monotonic()
            tally = asyncio.run(post_signups(system.url("auth"),
                                             bodies[sent:sent + per_second], 4))
            sent += per_second
            accepted[0] += len(tally.accepted)
            stop.wait(max(0.0, 1 - (time.monotonic() - started)))

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    try:
        yield accepted
    finally:
        stop.set()
        thread.join(30)


def test_screenshot_of_the_console_under_a_realistic_load(system: System) -> None:
    """docs/console.png is this test's artifact (``var/test-artifacts/console.png``): fake
    but realistic signups, a few a second for more than a minute, so that the chart has more
    than one minute and every stage a rate; the screenshot is taken while they arrive."""
    with steady_signups(system, 4, seed=80) as accepted:
        first_minute = int(time.time() // 60)
        system.wait_until(lambda: int(time.time() // 60) > first_minute + 1
                          and accepted[0] > 100, 200, "signups over three minutes")
        console(system)  # the worker's first count of each stage: the rates start there
        time.sleep(2)
        _, shown = console(system)
        assert shown.classes == dict.fromkeys(("auth", "member", "batch"), "stage ready")
        assert int(shown.figures["auth"]["processed"]) > 100
        assert all(float(shown.figures[s]["rate"]) > 0 for s in ("auth", "member")), shown
        assert sum(1 for t in shown.bars if not t.endswith("users 0, partners 0")) >= 2
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "console.png"
        shot.unlink(missing_ok=True)
        screenshot(system.url("batch") + "/console", shot, system.root / "chromium")
    system.wait_until(lambda: system.profiles() == system.count("auth", "member"), 60,
                      "every signup stored")




def test_console_shows_the_databases_counts_and_user_text_as_text(system: System) -> None:
    bodies = fake_signups(30, 0.4, seed=81)
    bodies[0] = {**bodies[0], "role": "PARTNER", "nickname": HOSTILE}
    tally = asyncio.run(post_signups(system.url("auth"), bodies))
    assert len(tally.accepted) == 30, tally.summary()
    system.wait_until(lambda: system.profiles() == system.count("auth", "member")
                      and system.count("batch", "partner_summary") == system.count(
                          "member", "partner_profile"), 60, "every profile and summary")
    partners = system.count("member", "partner_profile")
    chart = {"minute-users": str(system.count("member", "user_profile")),
             "minute-partners": str(partners)}
    system.wait_until(lambda: (figures := console(system)[1].figures).get(
        "batch", {}).get("processed") == str(partners) and figures.get("chart") == chart, 60,
        "the console to show every summary and every signup in the chart")
    dom, shown = console(system)
    stages = shown.figures
    # the chart: member's signups-per-minute table, equal to member.db's profiles by role
    assert stages["chart"] == {"minute-users": str(system.count("member", "user_profile")),
                               "minute-partners": str(system.count("member",
                                                                   "partner_profile"))}
    assert shown.bar_totals() == system.stored_by_role()  # bar by bar
    assert len(shown.bars) == 60
    # a time axis (a label every ten minutes) and a count axis from 0
    assert 6 <= len(shown.axes["x-axis"]) <= 7, shown.axes
    assert all(re.fullmatch(r"\d\d:\d\d", t) for t in shown.axes["x-axis"]), shown.axes
    counts = [int(t) for t in shown.axes["y-axis"]]
    assert counts[0] == 0 and counts == sorted(counts) and len(counts) >= 2
    assert counts[-1] >= max(sum(map(int, re.findall(r"\d+", t.split(": ")[1])))
                             for t in shown.bars)
    assert stages["auth"]["processed"] == str(system.count("auth", "member"))
    assert stages["auth"]["outbox"] == "0"
    assert stages["member"]["processed"] == str(system.profiles())
    assert stages["member"]["dead"] == "0" and stages["member"]["lag"] == "0"
    assert stages["batch"]["processed"] == str(system.count("batch", "partner_summary"))
    # signups only: no stage changed or deleted anything (counted from their own metrics)
    assert {s: (stages[s]["changed"], stages[s]["deleted"]) for s in (
        "auth", "member", "batch")} == dict.fromkeys(("auth", "member", "batch"), ("0", "0"))
    # what the frame means is said, and each stage says it in words
    assert "ready" in shown.legend and "not ready" in shown.legend
    assert {s: stages[s]["state"] for s in ("auth", "member", "batch")} == dict.fromkeys(
        ("auth", "member", "batch"), "\u2713 ready")
    # among the many partners, the page searched for it by its URL shows the nickname as text
    dom, shown = console(system, "?q=onerror")
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom
    assert shown.images == 0  # and never as an element


def test_a_stage_that_is_not_ready_says_so_in_words_not_only_in_colour(system: System) -> None:
    """A colour-blind reader must see it: a text, a dashed and hatched frame, the reasons."""
    system.stop("member")
    try:
        system.wait_until(lambda: console(system)[1].classes.get("member") ==
                          "stage not-ready", 60, "the console to show member not ready")
        _, shown = console(system)
        assert shown.figures["member"]["state"] == "\u2717 NOT READY: not answering"
        assert system.url("member") in shown.figures["member"]["reasons"]
        assert shown.classes["batch"] == "stage ready"
        assert shown.figures["batch"]["state"] == "\u2713 ready"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        screenshot(system.url("batch") + "/console", ARTIFACTS / "console-not-ready.png",
                   system.root / "chromium")
    finally:
        system.start("member")


#: ``/console/data`` as the batch worker answers it mid-life: members changed and deleted,
#: member and batch a little behind auth (one stage's figure hostile text: shown as text).
LIVES: dict[str, Any] = {
    "stages": {
        "auth": {"up": True, "ready": True, "processed": 412.0, "changed": 37.0,
                 "deleted": 9.0, "dead_lettered": 0.0, "lag": 0.0, "outbox_pending": 2.0,
                 "rate": 3.5, "reasons": []},
        "member": {"up": True, "ready": False, "processed": 455.0, "changed": 36.0,
                   "deleted": 8.0, "dead_lettered": 1.0, "lag": 3.0, "outbox_pending": 0.0,
                   "rate": 3.2, "reasons": [f"rebalancing {HOSTILE}"]},
        "batch": {"up": True, "ready": True, "processed": 131.0, "changed": HOSTILE,
                  "deleted": 3.0, "dead_lettered": 0.0, "lag": 0.0, "outbox_pending": 0.0,
                  "rate": 1.0, "reasons": []},
    },
    "per_minute": {"error": "member does not answer (a canned answer)"},
}


@contextmanager
def canned_console(data: dict[str, Any]) -> Iterator[str]:
    """The console's page served with a canned ``/console/data`` (and no partners): its DOM
    for any figures, without a system to bring them about."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            body, kind = ((PAGE.encode(), "text/html") if path == "/console" else
                          (json.dumps(data).encode(), "application/json")
                          if path == "/console/data" else
                          (b'{"partners": [], "next": null}', "application/json"))
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/console"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_console_counts_changes_and_deletions_per_stage_as_text(tmp_path: Path) -> None:
    with canned_console(LIVES) as url:
        dom = dump_dom(url, tmp_path / "chromium", 60, "--virtual-time-budget=5000")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        screenshot(url, ARTIFACTS / "console-changes.png", tmp_path / "chromium")
    shown = Stages(dom)
    assert {s: (shown.figures[s]["changed"], shown.figures[s]["deleted"])
            for s in ("auth", "member", "batch")} == {
        "auth": ("37", "9"), "member": ("36", "8"), "batch": (HOSTILE, "3")}
    assert shown.figures["auth"]["processed"] == "412"
    assert shown.figures["member"]["reasons"] == f"rebalancing {HOSTILE}"
    assert dom.count("&lt;img src=x onerror=alert(1)&gt;") == 2 and shown.images == 0


def test_a_stage_that_does_not_answer_counts_no_changes(tmp_path: Path) -> None:
    """Not a 0 it does not know."""
    down = {**LIVES, "stages": {**LIVES["stages"], "member": {
        "up": False, "ready": False, "reasons": ["http://member does not answer"]}}}
    with canned_console(down) as url:
        shown = Stages(dump_dom(url, tmp_path / "chromium", 60, "--virtual-time-budget=5000"))
    assert (shown.figures["member"]["changed"], shown.figures["member"]["deleted"]) == ("-", "-")
    assert shown.figures["auth"]["changed"] == "37"

