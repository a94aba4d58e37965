"""Prometheus metrics of a service's token checks, read from plain counters when scraped.

Serve them with prometheus_client as usual (e.g. ``prometheus_client.exposition`` in a
Tornado handler, or ``start_http_server``); they are registered on the default registry
when the first CachedHubAuth starts checking.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..metrics import register

PREFIX = "jupyter_token_cache_service"
_RESULTS = ("hits", "misses", "negative_hits", "negative_misses", "revoked_hits")


class TokenCheckCollector(Collector):
    """Sum the counters of every CachedHubAuth in this process."""

    def __init__(self) -> None:
        self.sources: weakref.WeakSet[Any] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        counts: Counter[str] = Counter()
        connected, lag = 0, 0.0
        for auth in list(self.sources):
            counts.update(auth._token_counts)
            state = auth._revocations
            connected = max(connected, int(state.connected))
            lag = max(lag, state.lag or 0.0)
        checks = CounterMetricFamily(
            f"{PREFIX}_checks", "Token checks, by how they were answered", labels=["result"]
        )
        for result in _RESULTS:
            checks.add_metric([result], counts[result])
        yield checks
        for name, help_ in (
            ("hub_calls", "Introspection calls to the hub"),
            ("hub_errors", "Introspection calls that failed (hub unreachable or erring)"),
            ("hub_busy", "Checks refused because too many hub calls were waiting"),
        ):
            yield CounterMetricFamily(f"{PREFIX}_{name}", help_, value=counts[name])
        evictions = CounterMetricFamily(
            f"{PREFIX}_evictions", "Cached answers evicted by events, by reason", labels=["reason"]
        )
        for key, n in sorted(counts.items()):
            if key.startswith("evictions:"):
                evictions.add_metric([key.partition(":")[2]], n)
        yield evictions
        yield GaugeMetricFamily(
            f"{PREFIX}_stream_connected", "1 while the hub's event stream is followed", connected
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_events_lag_seconds",
            "Seconds between the hub publishing the last event and this process receiving it",
            lag,
        )


COLLECTOR = TokenCheckCollector()


def track(auth: Any, registry: CollectorRegistry = REGISTRY) -> None:
    """Count ``auth``'s checks in this process's metrics (registering the collector once)."""
    COLLECTOR.sources.add(auth)
    register(registry, COLLECTOR)
