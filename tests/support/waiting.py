"""Waiting in tests for something a subprocess or a server does on its own time."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], what: str = "condition", timeout: float = 30.0,
             explain: Callable[[], str] = lambda: "") -> None:
    """Poll `predicate` every 20 ms until it holds; after `timeout` seconds fail, naming
    `what` (and what `explain` adds)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n"
                                 + explain())
        time.sleep(0.02)
