"""A spawned single-user server that probes the token API first (tests/e2e/probe.py), and its findings."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from ..hubprocess import ROOT

#: Hub configuration (after ``import os, sys``): simple local servers running the probe,
#: which writes its findings to ``{workdir}/probe.json`` before it serves.
SPAWNER = """
c.JupyterHub.spawner_class = "simple"
c.Spawner.cmd = [sys.executable, "-m", "tests.e2e.probe"]
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []
c.Spawner.environment = {{"PYTHONPATH": "{root}", "E2E_PROBE_OUT": "{workdir}/probe.json"}}
c.SimpleLocalProcessSpawner.home_dir_template = "{workdir}/home/{{username}}"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
"""


def spawner_config(workdir: Path) -> str:
    return SPAWNER.format(root=ROOT, workdir=workdir)


def spawn_and_probe(api: httpx.Client, user: str, workdir: Path) -> dict[str, Any]:
    """Create ``user``, start their server, wait until it is ready: the probe's findings."""
    assert api.post(f"users/{user}").status_code == 201
    assert api.post(f"users/{user}/server").status_code in (201, 202)
    deadline = time.monotonic() + 90
    while not api.get(f"users/{user}").json()["servers"].get("", {}).get("ready"):
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.3)
    return json.loads((workdir / "probe.json").read_text())  # type: ignore[no-any-return]
