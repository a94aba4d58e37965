"""Reading the times of REST answers in tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def epoch(iso: str) -> float:
    """JupyterHub's ISO 8601 UTC text ("2026-11-25T10:30:00.123456Z") as epoch seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def timeless(body: dict[str, Any]) -> dict[str, Any]:
    """A token answer without ``expires_in``, which counts down between two answers."""
    return {k: v for k, v in body.items() if k != "expires_in"}
