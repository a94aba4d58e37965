"""Probe a hub's event loop from a process of its own: ``GET /hub/api/`` every 10 ms.

``python -m benchmarks.stall URL OUT`` writes one line per probe, ``sent latency`` in
seconds of ``time.monotonic()`` (CLOCK_MONOTONIC, the same clock in every process of the
machine), to OUT until it is terminated. JupyterHub answers ``/hub/api/`` from its one
event loop without touching the database, so while the loop is held (a long statement,
a long stretch of Python between two awaits) the probes wait: the worst latency of the
probes that overlap an operation is how long the operation held the loop.

A process of its own, with a blocking client: the benchmark's own event loop and
requests cannot delay a probe, and the probe costs the hub one cheap request per 10 ms.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

import httpx

#: Seconds between the start of two probes.
INTERVAL = 0.010


def main() -> None:
    url, out = sys.argv[1], sys.argv[2]
    running = True

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    with httpx.Client(timeout=60) as client, open(out, "w", buffering=1) as samples:
        while running:
            sent = time.monotonic()
            try:
                client.get(url)
            except httpx.HTTPError:
                continue
            took = time.monotonic() - sent
            samples.write(f"{sent:.6f} {took:.6f}\n")
            time.sleep(max(0.0, INTERVAL - took))


if __name__ == "__main__":
    main()
