"""Upstream sessions in a dict, for the verifier outside a hub (the hub keeps them in its database)."""

from __future__ import annotations


class Sessions:
    """Upstream sessions in a dict (the hub keeps them in its database)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str, float | None]] = {}

    def seen(self, name: str, session: str, username: str, expires_at: float | None) -> None:
        self.rows[name] = (session, username, expires_at)

    def ended(self, name: str) -> tuple[str, str, float | None] | None:
        return self.rows.pop(name, None)
