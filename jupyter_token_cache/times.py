"""Times as JupyterHub's REST API writes them: ISO 8601 in UTC with a ``Z``.

One place for both directions, so every answer (tokens, listings, health) writes a time
as the hub's own token model does and every reader (the client, the replicated
service) reads it back the same way. No dependency beyond the standard library: the
client imports it in notebooks.
"""

from __future__ import annotations

from datetime import datetime, timezone


def iso8601(epoch: float | None) -> str | None:
    """``epoch`` seconds as ``jupyterhub.utils.isoformat`` writes them (a test compares them)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None).isoformat() + "Z"


def parse_iso8601(text: str) -> datetime:
    """An aware UTC datetime from the hub's text ("…Z": Python 3.10's fromisoformat reads no Z)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def epoch_seconds(when: datetime | None) -> float | None:
    """A time from the hub's database as epoch seconds (JupyterHub stores naive UTC)."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def naive_utc(epoch: float) -> datetime:
    """Epoch seconds as JupyterHub stores times (naive UTC)."""
    return datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None)
