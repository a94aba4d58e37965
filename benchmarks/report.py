"""Write what a run measured: JSON with the raw figures, a markdown table with the ratios."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from .timing import Figures


def machine() -> dict[str, Any]:
    import jupyterhub

    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "jupyterhub": jupyterhub.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def ratio_rows(
    groups: dict[str, dict[str, Figures]], ratios: list[tuple[Any, ...]]
) -> list[dict[str, Any]]:
    rows = []
    for label, group, ours, baseline, target in ratios:
        if group not in groups:
            continue
        value = groups[group][ours].percentile(50) / groups[group][baseline].percentile(50)
        rows.append({"ratio": label, "value": value, "target": target,
                     "met": None if target is None else value <= target})  # fmt: skip
    return rows


def markdown(groups: dict[str, dict[str, Figures]], rows: list[dict[str, Any]], info: dict) -> str:
    lines = [
        f"Measured {info['date']} on {info['cpu']} ({info['cores']} cores), Python "
        f"{info['python']}, JupyterHub {info['jupyterhub']}.",
        "",
        "| path | contender | p50 µs | p95 µs | p99 µs | req/s c1 | req/s c10 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for group, contenders in groups.items():
        for name, figures in contenders.items():
            s = figures.summary()
            rps = [f"{figures.rps[c]:,.0f}" if c in figures.rps else "" for c in (1, 10)]
            lines.append(
                f"| {group} | {name} | {s['p50_us']:,.1f} | {s['p95_us']:,.1f} | "
                f"{s['p99_us']:,.1f} | {rps[0]} | {rps[1]} |"
            )
    lines += ["", "| ratio | value | target | met |", "|---|---:|---:|---|"]
    for row in rows:
        target = "" if row["target"] is None else f"<= {row['target']}"
        met = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(f"| {row['ratio']} | {row['value']:.2f}x | {target} | {met} |")
    return "\n".join(lines) + "\n"


def write(
    out: Path, groups: dict[str, dict[str, Figures]], rows: list[dict[str, Any]], quick: bool
) -> str:
    info = machine()
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(groups, rows, info)
    data = {
        "machine": info,
        "quick": quick,
        "groups": {g: {n: f.summary() for n, f in c.items()} for g, c in groups.items()},
        "ratios": rows,
    }
    stem = "quick" if quick else "latest"
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / f"{stem}.md").write_text(table)
    return table
