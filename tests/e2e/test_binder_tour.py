"""The Binder tour (binder/token-cache-tour.ipynb) runs, cell by cell, with its assertions.

Once as anywhere but Binder (the tour starts and stops its own demo hub), once as on
mybinder.org (binder/start runs the demo hub, then the command that executes the tour).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from ..hubprocess import ROOT
from ..servers import free_port
from .test_demo import alive, need_proxy

TOUR = ROOT / "binder" / "token-cache-tour.ipynb"

EXECUTE = """
import sys
import nbformat
from nbclient import NotebookClient

nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=180, kernel_name="python3").execute()
nbformat.write(nb, sys.argv[2])
"""


def execute(tmp_path: Path, command: list[str], env: dict[str, str]) -> str:
    """Run the tour; on a failing cell, show the cell's error. Returns the outputs' text."""
    out = tmp_path / "executed.ipynb"
    result = subprocess.run(
        [*command, sys.executable, "-c", EXECUTE, str(TOUR), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    nb = nbformat.read(out, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count for cell in code), "a cell did not run"
    return "\n".join(str(output.get("text", "")) for cell in code for output in cell.outputs)


@pytest.mark.e2e
def test_the_tour_runs_with_its_own_demo_hub(tmp_path: Path) -> None:
    need_proxy()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKEN_CACHE_DEMO_")}
    text = execute(tmp_path, [], env)
    assert "cached: True" in text and "demo hub stopped" in text


@pytest.mark.e2e
def test_the_tour_runs_beside_the_hub_binder_start_runs(tmp_path: Path) -> None:
    need_proxy()
    demo_dir = tmp_path / "demo"
    demo = {"TOKEN_CACHE_DEMO_DIR": str(demo_dir), "TOKEN_CACHE_DEMO_PORT": str(free_port())}
    # what Binder's own hub sets, which the demo hub must not take for its own
    binder = {"JUPYTERHUB_API_TOKEN": "binder-s-own", "JUPYTERHUB_API_URL": "http://127.0.0.1:9/"}
    env = {**os.environ, **demo, **binder}
    try:
        text = execute(tmp_path, ["bash", str(ROOT / "binder" / "start")], env)
        assert "cached: True" in text and "demo hub stopped" not in text
        launcher = int((demo_dir / "launcher.pid").read_text())
        hub = int((demo_dir / "jupyterhub.pid").read_text())
        assert alive(launcher) and alive(hub), "binder/start's hub stopped with the tour"
    finally:
        pid_file = demo_dir / "launcher.pid"
        if pid_file.exists() and alive(launcher := int(pid_file.read_text())):
            os.kill(launcher, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while alive(launcher) and time.monotonic() < deadline:
                time.sleep(0.2)
    assert not (demo_dir / "jupyterhub.pid").exists(), "the demo hub outlived its launcher"
