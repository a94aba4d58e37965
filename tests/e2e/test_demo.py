"""The demo launcher (``./run demo``) stops jupyterhub and the proxy however it is stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..servers import free_port, unavailable


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped has stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def need_proxy() -> None:
    if shutil.which("configurable-http-proxy") is None:
        unavailable(
            "configurable-http-proxy is not installed (npm install -g configurable-http-proxy)"
        )


def wait_for(path: Path, demo: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        assert demo.poll() is None, f"the demo exited with {demo.returncode}"
        assert time.monotonic() < deadline, f"{path.name} did not appear within {timeout:.0f} s"
        time.sleep(0.2)


@pytest.mark.e2e
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_demo_stops_jupyterhub_and_the_proxy(tmp_path: Path, stop: signal.Signals) -> None:
    need_proxy()
    demo = subprocess.Popen(
        [sys.executable, "-m", "jupyter_token_cache.demo", "--quiet", "--port", str(free_port())]
        + ["--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(tmp_path / "demo-token", demo)  # written once the hub answers
        hub_pid = int((tmp_path / "jupyterhub.pid").read_text())
        proxy_pid = int((tmp_path / "proxy.pid").read_text())
        assert alive(hub_pid) and alive(proxy_pid)

        demo.send_signal(stop)  # as `kill <pid>` (SIGTERM) or Ctrl-C (SIGINT) would
        demo.wait(45)
        deadline = time.monotonic() + 15
        while (alive(hub_pid) or alive(proxy_pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(hub_pid), "jupyterhub outlived the demo"
        assert not alive(proxy_pid), "configurable-http-proxy outlived the demo"
        assert demo.stderr is not None and demo.stderr.read() == b"", "--quiet printed progress"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for name in ("jupyterhub.pid", "proxy.pid"):  # never leave a server behind
            pid_file = tmp_path / name
            if pid_file.exists() and alive(pid := int(pid_file.read_text() or 0)):
                os.kill(pid, signal.SIGKILL)
