"""Run the benchmarks: ``python -m benchmarks [--quick] [--only SECTION] [--out DIR]``.

``./run bench [ARGS]`` sets up what a fresh machine lacks, then runs this.

Starts what it needs (five jupyterhub processes, redis-server, memcached, event-stream
subscribers, the example service, all on loopback) and stops it; writes JSON, a markdown
table and a PNG plot to ``--out``. ``--only`` runs some sections (hub, storage, memory,
events, services) and names the files after them (``latest-events.json``), so the full
results are not overwritten.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from . import events, hub, memory, report, services, storage
from .timing import Figures

SECTIONS = ("hub", "storage", "memory", "events", "services")


Groups = dict[str, dict[str, Figures]]
Measured = tuple[
    Groups, dict[str, Any], dict[str, Any], dict[str, Any] | None, dict[str, Any] | None
]


async def measure(quick: bool, sections: tuple[str, ...]) -> Measured:
    """Groups, counts, memory figures, events and services (None unless run) of ``sections``."""
    groups: Groups = {}
    counts: dict[str, Any] = {}
    if "hub" in sections:
        groups, counts = await hub.run(quick)
    if "storage" in sections:
        groups.update(await storage.run(quick))
    mem = await memory.run(quick) if "memory" in sections else {}
    found = await events.run(quick) if "events" in sections else None
    return groups, counts, mem, found, await services.run(quick) if "services" in sections else None


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
    args = parser.parse_args()
    sections = tuple(s for s in SECTIONS if s in args.only) if args.only else SECTIONS
    groups, counts, mem, found, checks = asyncio.run(measure(args.quick, sections))
    rows = report.ratio_rows(groups, hub.RATIOS + storage.RATIOS)
    named = () if sections == SECTIONS else sections
    print(report.write(args.out, groups, rows, args.quick, counts, mem, found, named, checks))


if __name__ == "__main__":
    main()
