"""Time in tests: reading the times of REST answers, and waiting (bounded) for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any


def epoch(iso: str) -> float:
    """JupyterHub's ISO 8601 UTC text ("2026-11-25T10:30:00.123456Z") as epoch seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def timeless(body: dict[str, Any]) -> dict[str, Any]:
    """A token answer without ``expires_in``, which counts down between two answers."""
    return {k: v for k, v in body.items() if k != "expires_in"}


def until(predicate: Callable[[], Any], timeout: float, what: str = "the condition") -> float:
    """Poll ``predicate`` every 50 ms until it is true; the seconds that took. Fails the test
    (naming ``what``) once ``timeout`` seconds have passed: every wait is bounded."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - start
