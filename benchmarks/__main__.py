"""Run the benchmarks: ``python -m benchmarks [--quick] [--out DIR]``."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from . import report, storage


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (CI)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    groups = asyncio.run(storage.run(args.quick))
    rows = report.ratio_rows(groups, storage.RATIOS)
    print(report.write(args.out, groups, rows, args.quick))


if __name__ == "__main__":
    main()
