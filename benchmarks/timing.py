"""Measuring helpers: interleaved rounds, percentiles, throughput.

The machine is shared and noisy, so contenders that are compared run in alternating
rounds within one process, and ratios are taken between figures from the same run.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import progress

Op = Callable[[], Any]  # sync, or returning an awaitable


@dataclass
class Figures:
    """Latency samples (seconds) of one contender and what they summarise to."""

    name: str
    samples: list[float] = field(default_factory=list)
    rps: dict[int, float] = field(default_factory=dict)  # concurrency -> requests/second
    extra: dict[str, Any] = field(default_factory=dict)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {
            "n": len(self.samples),
            "p50_us": self.percentile(50) * 1e6,
            "p95_us": self.percentile(95) * 1e6,
            "p99_us": self.percentile(99) * 1e6,
            "mean_us": statistics.fmean(self.samples) * 1e6 if self.samples else 0.0,
            "rps": {str(c): r for c, r in self.rps.items()},
            **self.extra,
        }


async def _run(op: Op, n: int) -> float:
    """Seconds for ``n`` calls of ``op`` back to back."""
    if inspect.iscoroutinefunction(op) or _returns_awaitable(op):
        started = time.perf_counter()
        for _ in range(n):
            await op()
        return time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(n):
        op()
    return time.perf_counter() - started


def _returns_awaitable(op: Op) -> bool:
    result = op()
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        return True
    return False


async def interleaved(
    contenders: dict[str, Op], *, rounds: int, per_round: int, batch: int = 1
) -> dict[str, Figures]:
    """Alternate the contenders round by round; one sample per ``batch`` calls.

    With ``batch`` > 1 a sample is the mean of a batch, which keeps the clock's own cost
    out of sub-microsecond figures.
    """
    figures = {name: Figures(name) for name in contenders}
    progress.step(f"latency of {', '.join(contenders)}: {rounds} rounds of {per_round} calls")
    for op in contenders.values():  # warm up connections, caches, JIT-less paths
        await _run(op, min(per_round, 200))
    for done in range(rounds):
        if rounds >= 4 and done and done % (rounds // 4) == 0:
            progress.step(f"  round {done + 1}/{rounds}")
        for name, op in contenders.items():
            for _ in range(per_round // batch):
                figures[name].samples.append(await _run(op, batch) / batch)
    return figures


async def burst(op: Callable[[], Awaitable[Any]], concurrency: int, total: int) -> float:
    """Seconds for ``concurrency`` callers to share ``total`` calls."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await op()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def throughput(
    contenders: dict[str, Callable[[], Awaitable[Any]]],
    figures: dict[str, Figures],
    *,
    total: int,
    rounds: int = 5,
    concurrencies: tuple[int, ...] = (1, 10),
) -> None:
    """Requests per second of each contender at each concurrency, into ``figures[name].rps``.

    Contenders alternate in ``rounds`` bursts of ``total / rounds`` calls, so a noisy
    neighbour slows them all alike; the figure is calls over the summed burst times.
    """
    per_round = max(1, total // rounds)
    for concurrency in concurrencies:
        progress.step(f"throughput at concurrency {concurrency}: {total} calls each")
        spent = dict.fromkeys(contenders, 0.0)
        for _ in range(rounds):
            for name, op in contenders.items():
                spent[name] += await burst(op, concurrency, per_round)
        for name in contenders:
            figures[name].rps[concurrency] = per_round * rounds / spent[name]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (from /proc; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy, and has had, summed over its cores.

    From the ``cpu`` line of /proc/stat: busy is everything but idle and iowait. Every
    process counts, other users' too: on a shared machine this says how much of it was
    left for what is being measured.
    """
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = ticks[3] + ticks[4]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz
