"""Run the benchmarks: ``python -m benchmarks [--quick] [--out DIR]`` (``./run bench``).

Starts what it needs (three jupyterhub processes, redis-server, memcached, all on
loopback) and stops it; writes JSON, a markdown table and a PNG plot to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from . import hub, memory, report, storage


async def measure(quick: bool) -> tuple[dict, dict, dict]:  # type: ignore[type-arg]
    groups, counts = await hub.run(quick)
    groups.update(await storage.run(quick))
    return groups, counts, await memory.run(quick)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (CI)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    groups, counts, mem = asyncio.run(measure(args.quick))
    rows = report.ratio_rows(groups, hub.RATIOS + storage.RATIOS)
    print(report.write(args.out, groups, rows, args.quick, counts, mem))


if __name__ == "__main__":
    main()
