"""The live console (``GET /console`` on the batch port) in headless Chromium: its numbers
equal the databases' counts (the signups-per-minute chart's totals member.db's profiles by
role), user text is shown as text, and a screenshot is kept."""

from __future__ import annotations

import asyncio
import os
from html.parser import HTMLParser
from pathlib import Path

from signupflow.client import post_signups
from signupflow.domain.fake import fake_signups
from tests.integration.browser import dump_dom, screenshot
from tests.integration.system import System

HOSTILE = "<img src=x onerror=alert(1)>"
#: Where the screenshot is kept (a test artifact): ``SIGNUPFLOW_ARTIFACTS``, by default
#: ``var/test-artifacts`` of the checkout.
ARTIFACTS = Path(os.environ.get("SIGNUPFLOW_ARTIFACTS") or "var/test-artifacts")


class Stages(HTMLParser):
    """The text of each ``dd`` of the ``#stage-<name>`` sections, by class; and of the chart's
    totals (``strong#minute-*``), as stage ``chart``."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, str]] = {}
        self.images = 0
        self._stage = ""
        self._field = ""
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "img":
            self.images += 1
        if tag == "section" and (attr.get("id") or "").startswith("stage-"):
            self._stage = (attr["id"] or "").removeprefix("stage-")
            self.figures[self._stage] = {}
        elif tag == "dd" and self._stage:
            self._field = attr.get("class") or ""
        elif tag == "strong" and (attr.get("id") or "").startswith("minute-"):
            self._stage, self._field = "chart", attr["id"] or ""
            self.figures.setdefault("chart", {})

    def handle_data(self, data: str) -> None:
        if self._field:
            self.figures[self._stage][self._field] = data.strip()

    def handle_endtag(self, tag: str) -> None:
        if tag == "dd":
            self._field = ""
        elif tag in ("section", "strong"):
            self._stage = self._field = ""


def test_console_shows_the_databases_counts_and_user_text_as_text(system: System) -> None:
    bodies = fake_signups(30, 0.4, seed=81)
    bodies[0] = {**bodies[0], "role": "PARTNER", "nickname": HOSTILE}
    tally = asyncio.run(post_signups(system.url("auth"), bodies))
    assert len(tally.accepted) == 30, tally.summary()
    partners = sum(b["role"] == "PARTNER" for b in bodies)
    system.wait_until(lambda: system.profiles() == 30
                      and system.count("batch", "partner_summary") == partners, 60,
                      "every profile and summary")
    url = system.url("batch") + "/console"
    chart = {"minute-users": str(30 - partners), "minute-partners": str(partners)}
    system.wait_until(lambda: (figures := Stages(dump_dom(
        url, system.root / "chromium", 60, "--virtual-time-budget=5000")).figures).get(
        "batch", {}).get("processed") == str(partners) and figures.get("chart") == chart, 60,
        "the console to show every summary and every signup in the chart")
    dom = dump_dom(url, system.root / "chromium", 60, "--virtual-time-budget=5000")
    stages = Stages(dom).figures
    # the chart: member's signups-per-minute table, equal to member.db's profiles by role
    assert stages["chart"] == {"minute-users": str(system.count("member", "user_profile")),
                               "minute-partners": str(system.count("member",
                                                                   "partner_profile"))}
    assert stages["auth"]["processed"] == str(system.count("auth", "member"))
    assert stages["auth"]["outbox"] == "0"
    assert stages["member"]["processed"] == str(system.profiles())
    assert stages["member"]["dead"] == "0" and stages["member"]["lag"] == "0"
    assert stages["batch"]["processed"] == str(system.count("batch", "partner_summary"))
    assert 'class="stage ready"' in dom
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom  # the nickname, as text
    assert Stages(dom).images == 0  # and never as an element
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "console.png"
    shot.unlink(missing_ok=True)
    screenshot(url, shot, system.root / "chromium")
