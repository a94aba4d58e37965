"""Prometheus metrics for the token cache, served on the hub's own ``/hub/metrics``.

A custom collector reads the stores' plain counters when the hub is scraped, so the hot
path never touches a prometheus_client lock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .cache import engine
from .cache.stats import EVENTS

PREFIX = "jupyterhub_token_cache"

#: Metric names for engine events where the token vocabulary differs.
_NAMES = {"creations": "mints"}

_HELP = {
    "hits": "Lookups answered from the token cache",
    "misses": "Lookups the token cache could not answer",
    "creations": "Tokens minted after a miss",
    "evictions": "Entries dropped for size or because their token was revoked",
    "errors": "Backend calls that failed or timed out (served as misses)",
}


class TokenCacheCollector(Collector):
    """Report every live store's counters, summed per backend and entry kind."""

    def collect(self) -> Iterator[Metric]:
        stores = list(engine._STORES.values())
        counts: Counter[tuple[str, str, str]] = Counter()
        entries: Counter[str] = Counter()
        up: dict[str, int] = {}
        for store in stores:
            for (event, kind), n in store.stats.counts.items():
                counts[(event, store.name, kind or "-")] += n
            entries[store.name] += store.entries() or 0
            up[store.name] = min(up.get(store.name, 1), int(store.available))
        for event in EVENTS:
            family = CounterMetricFamily(
                f"{PREFIX}_{_NAMES.get(event, event)}", _HELP[event], labels=["backend", "kind"]
            )
            for (name, backend, kind), n in sorted(counts.items()):
                if name == event:
                    family.add_metric([backend, kind], n)
            yield family
        gauge = GaugeMetricFamily(
            f"{PREFIX}_entries", "Entries held (memory backend only)", labels=["backend"]
        )
        for backend, n in sorted(entries.items()):
            gauge.add_metric([backend], n)
        yield gauge
        available = GaugeMetricFamily(
            f"{PREFIX}_backend_up", "1 while the cache backend answers", labels=["backend"]
        )
        for backend, value in sorted(up.items()):
            available.add_metric([backend], value)
        yield available


_COLLECTOR = TokenCacheCollector()


def register(registry: CollectorRegistry = REGISTRY, collector: Collector = _COLLECTOR) -> None:
    """Add ``collector`` (the token cache's) to ``registry`` (the default one) once."""
    try:
        registry.register(collector)
    except ValueError:  # already registered
        pass
