"""Counters a cache store keeps: plain integers on the hot path, read by stats() and Prometheus."""

from __future__ import annotations

from collections import Counter

EVENTS = ("hits", "misses", "creations", "evictions", "errors")


class CacheStats:
    """Event counts per entry kind (``notebook``, ``internal``, ...).

    Incrementing a ``Counter`` costs a few tens of nanoseconds; a prometheus_client
    ``Counter.inc()`` takes a lock and costs ten times that, so the hot path only counts
    here and the Prometheus collector reads these numbers when the hub is scraped.
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def add(self, event: str, kind: str = "", n: int = 1) -> None:
        self.counts[(event, kind)] += n

    def totals(self) -> dict[str, int]:
        """Each event summed over kinds."""
        totals = dict.fromkeys(EVENTS, 0)
        for (event, _), n in self.counts.items():
            totals[event] += n
        return totals

    def by_kind(self) -> dict[str, dict[str, int]]:
        """``{kind: {event: n}}`` for every kind seen so far."""
        kinds: dict[str, dict[str, int]] = {}
        for (event, kind), n in self.counts.items():
            kinds.setdefault(kind or "-", dict.fromkeys(EVENTS, 0))[event] += n
        return kinds
