"""Running the installed ``jupyter-token-cache`` console script, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: The console script pip installed next to this interpreter (pyproject [project.scripts]).
SCRIPT = Path(sys.executable).with_name("jupyter-token-cache")


def cli(
    *args: str, env: dict[str, str] | None = None, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the command with ``args``; ``env`` replaces the hub variables of this process."""
    assert SCRIPT.exists(), f"{SCRIPT} is not installed (pip install -e .)"
    base = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    return subprocess.run(  # noqa: S603 - our own console script
        [str(SCRIPT), *args],
        env={**base, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one stderr line a failure prints (never a traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jupyter-token-cache: "), lines
    return lines[0]
