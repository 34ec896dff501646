"""Headless Chromium (Debian's ``chromium``) for the web views: the DOM as a browser builds it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

# Without the background-networking flags Chromium keeps calling Google's hosts, which this
# closed network refuses; a fresh profile folder keeps runs independent.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    path = os.environ.get("SIGNUPFLOW_CHROMIUM") or shutil.which("chromium")
    if not path:
        raise RuntimeError("chromium not found: `make test` installs Debian's chromium with apt "
                           "(or set SIGNUPFLOW_CHROMIUM to a Chromium binary)")
    return path


def dump_dom(url: str, profile_dir: Path, timeout: float = 60, *extra: str) -> str:
    """The page's DOM after load, serialised by Chromium; its process group is stopped after.
    ``extra`` flags, e.g. ``--virtual-time-budget=5000`` to let the page's scripts run first."""
    proc = subprocess.Popen(
        [chromium(), *FLAGS, f"--user-data-dir={profile_dir}", *extra, "--dump-dom", url],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # renderer, zygote and GPU helpers too
        proc.wait()
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}"
    return out.decode()


class SummaryTable(HTMLParser):
    """The partner rows (``tr[data-partner-id]`` cell texts), the ``#count`` text and the
    ``a#next`` link of a DOM."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.count = ""
        self.next: str | None = None
        self._row: str | None = None
        self._in_cell = self._in_count = False
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        partner_id = attr.get("data-partner-id")
        if tag == "tr" and partner_id:
            self._row = partner_id
            self.rows[partner_id] = []
        elif tag == "td" and self._row is not None:
            self._in_cell = True
            self.rows[self._row].append("")
        elif attr.get("id") == "count":
            self._in_count = True
        elif tag == "a" and attr.get("id") == "next":
            self.next = attr.get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False
        elif tag == "tr":
            self._row = None
        elif tag == "strong":
            self._in_count = False

    def handle_data(self, data: str) -> None:
        if self._in_cell and self._row is not None:
            self.rows[self._row][-1] += data
        elif self._in_count:
            self.count += data


def screenshot(url: str, path: Path, profile_dir: Path, timeout: float = 60) -> None:
    """A PNG of the page after its scripts had ``5 s`` of virtual time (a test artifact)."""
    proc = subprocess.Popen(
        [chromium(), *FLAGS, f"--user-data-dir={profile_dir}", "--virtual-time-budget=5000",
         "--window-size=1280,1000", f"--screenshot={path}", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert path.exists() and path.stat().st_size > 0, f"no screenshot at {path}"
