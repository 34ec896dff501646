"""The member worker with a wedge induced, for the liveness test: its seek to the committed
offsets at the end of a rebalance never returns (as when the group coordinator never
answers), so it never becomes ready while the broker and its database answer.

Run as ``faust -A tests.integration.wedged_member worker``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from faust.types import TP

from signupflow import transport
from signupflow.streams.member import app

__all__ = ["app"]


async def never_answered(self: transport.Consumer) -> Mapping[TP, int]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


transport.Consumer.seek_to_committed = never_answered  # type: ignore[method-assign]
