"""Run the benchmarks: ``python -m benchmarks [--quick] [--only SECTION] [--out DIR]``.

``./run bench [ARGS]`` sets up what a fresh machine lacks, then runs this.

Starts what it needs (jupyterhub processes, redis-server, memcached, event-stream
subscribers, the example service, replicas of ``jupyter-token-cache serve``, wrk, all on
loopback) and stops it; writes JSON, a markdown table and a PNG plot to ``--out``.
``--only`` runs some sections (hub, storage, memory, events, services, exchange, replicas,
scale, restarts, upstream) and names the files after them (``latest-events.json``), so
the full results are not overwritten.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from . import (
    events,
    exchange,
    hub,
    memory,
    progress,
    replicas,
    report,
    restarts,
    scale,
    services,
    storage,
    upstream,
)
from .timing import Figures

SECTIONS = (
    "hub",
    "storage",
    "memory",
    "events",
    "services",
    "exchange",
    "replicas",
    "scale",
    "restarts",
    "upstream",
)


Groups = dict[str, dict[str, Figures]]
Measured = tuple[
    Groups,
    dict[str, Any],
    dict[str, Any],
    dict[str, Any] | None,
    dict[str, Any] | None,
    dict[str, Any] | None,
    dict[str, Any] | None,
    dict[str, Any] | None,
    dict[str, Any] | None,
    dict[str, Any] | None,
]


async def measure(quick: bool, sections: tuple[str, ...]) -> Measured:
    """Groups, counts, memory figures, then events, services, exchange, replicas, scale,
    restarts and upstream (None unless run) of ``sections``."""
    groups: Groups = {}
    counts: dict[str, Any] = {}
    mem: dict[str, Any] = {}
    found = checks = exchanges = replicated = outbound = scaled = restarted = None
    for index, name in enumerate(sections, 1):
        progress.section(name, index, len(sections))
        if name == "hub":
            groups, counts = await hub.run(quick)
        elif name == "storage":
            groups.update(await storage.run(quick))
        elif name == "memory":
            mem = await memory.run(quick)
        elif name == "events":
            found = await events.run(quick)
        elif name == "services":
            checks = await services.run(quick)
        elif name == "exchange":
            exchanges = await exchange.run(quick)
        elif name == "replicas":
            replicated = await replicas.run(quick)
        elif name == "upstream":
            outbound = await upstream.run(quick)
        elif name == "scale":
            scaled = await scale.run(quick)
        elif name == "restarts":
            restarted = await restarts.run(quick)
    progress.step("writing the report")
    return groups, counts, mem, found, checks, exchanges, replicated, outbound, scaled, restarted


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (CI)")
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run this section only (repeatable; one of {', '.join(SECTIONS)})",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--quiet", action="store_true", help="no progress lines (CI logs)")
    args = parser.parse_args()
    progress.configure(quiet=args.quiet)
    sections = tuple(s for s in SECTIONS if s in args.only) if args.only else SECTIONS
    groups, counts, mem, found, checks, exchanges, replicated, outbound, scaled, restarted = (
        asyncio.run(measure(args.quick, sections))
    )
    rows = report.ratio_rows(groups, hub.RATIOS + storage.RATIOS)
    named = () if sections == SECTIONS else sections
    print(
        report.write(
            args.out,
            groups,
            rows,
            args.quick,
            counts,
            mem,
            found,
            named,
            checks,
            exchanges,
            replicas=replicated,
            upstream=outbound,
            scale=scaled,
            restarts=restarted,
        )
    )


if __name__ == "__main__":
    main()
