"""A line per step of a benchmark run, on stderr, saying how far along it is.

``python -m benchmarks --quiet`` (``./run bench --quiet``) turns the lines off. The
results still go to stdout and the files, so a log shows progress without mixing it in.
"""

from __future__ import annotations

import sys
import time

_state = {"quiet": False, "started": time.monotonic(), "section": ""}


def configure(*, quiet: bool) -> None:
    _state.update(quiet=quiet, started=time.monotonic(), section="")


def section(name: str, index: int, total: int) -> None:
    """Start section ``index`` of ``total`` (1-based)."""
    _state["section"] = f"{index}/{total} {name}"
    step("started")


def step(message: str) -> None:
    if _state["quiet"]:
        return
    elapsed = int(time.monotonic() - float(_state["started"]))
    print(
        f"bench {elapsed // 60:02d}:{elapsed % 60:02d} [{_state['section']}] {message}",
        file=sys.stderr,
        flush=True,
    )
