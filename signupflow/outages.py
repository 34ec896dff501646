"""How a worker tells of an outage: one line when a dependency goes away, a reminder at most
every :data:`REMINDER_EVERY` seconds while it lasts, one line when it is back, with how long.

A broker outage used to write about 180 lines a second per worker (aiokafka's "Unable connect
to node with id 1" and its companions: 3,600 lines in a 20 s outage, 2026-12-07), while the
terminal of ``signupflow up`` said nothing. Now :class:`Outage` writes the transitions of a
dependency as the worker sees it (its probes, its writes, its sends), :class:`RepeatFilter`
collapses a library's repeated warnings and errors (the first one of each kind still shows as
it is), and ``signupflow up`` echoes the lines that match :data:`TRANSITION`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Seconds between two reminders of one outage, and between two lines of one repeated
#: library message.
REMINDER_EVERY = 30.0

#: The log lines of an outage's transitions (and of a wedged worker's exit): what
#: ``signupflow up`` shows in its terminal.
TRANSITION = re.compile(r"\); waiting\b| still [\w ]+ after \d+s \(| back after [\d.]+s\b"
                        r"|\bwedged\b")

Clock = Callable[[], float]


class Outage:
    """One dependency of a worker (its database, the broker) or one step that needs it, as
    the worker's own attempts and probes see it, and the log lines of its transitions:
    ``<name> <down> (<reason>); waiting``, ``<name> still <down> after 30s (<reason>)``,
    ``<name> back after 12.3s``."""

    def __init__(self, name: str, down: str = "unavailable", clock: Clock = time.monotonic):
        self.name = name
        self.down_word = down
        self.clock = clock
        #: when the outage began (monotonic), None while the dependency answers
        self.since: float | None = None
        self.reason = ""
        self._told = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, reason: str, since: float | None = None) -> None:
        """An attempt failed for want of the dependency (begun at ``since``, default now)."""
        now = self.clock()
        self.reason = reason
        if self.since is None:
            self.since = now if since is None else since
            self._told = now
            log.error("%s %s (%s); waiting", self.name, self.down_word, reason)
        elif now - self._told >= REMINDER_EVERY:
            self._told = now
            log.error("%s still %s after %.0fs (%s)", self.name, self.down_word,
                      now - self.since, reason)

    def recovered(self) -> None:
        """An attempt succeeded: the outage, if any, is over."""
        if self.since is not None:
            log.warning("%s back after %.1fs", self.name, self.clock() - self.since)
            self.since = None

    def observe(self, problem: str | None) -> str | None:
        """A probe's answer (None: the dependency answers); returns it."""
        if problem is None:
            self.recovered()
        else:
            self.failed(problem)
        return problem


class RepeatFilter(logging.Filter):
    """Lets each kind of warning or error of the libraries named by ``prefixes`` through once
    every :data:`REMINDER_EVERY` seconds.

    A kind is a logger and its message template ("Unable connect to node with id %s: %s"). The
    first record of a kind passes as it is, so a real first error is never hidden; the ones
    after it are counted, and the next one let through says how many were left out. Attach one
    per handler: a filter decides for the handler it sits on.
    """

    def __init__(self, prefixes: tuple[str, ...] = ("aiokafka",),
                 every: float = REMINDER_EVERY, clock: Clock = time.monotonic):
        super().__init__()
        self.prefixes = prefixes
        self.every = every
        self.clock = clock
        self._kinds: dict[tuple[str, str], tuple[float, int]] = {}  # last shown, left out

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True
        kind = (record.name, str(record.msg))
        now = self.clock()
        shown, left_out = self._kinds.get(kind, (None, 0))
        if shown is not None and now - shown < self.every:
            self._kinds[kind] = (shown, left_out + 1)
            return False
        self._kinds[kind] = (now, 0)
        if left_out:
            record.msg = (f"{record.getMessage()} (and {left_out} more like it in the last "
                          f"{now - (shown or now):.0f}s, not shown)")
            record.args = ()
        return True
