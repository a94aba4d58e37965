"""Exit statuses and the one error type every subcommand ends with."""

from __future__ import annotations

import sys

from .output import visible

#: Exit statuses (docs/cli.md lists them): scripts may tell these apart.
OK = 0
#: An error, problems found by check-config, or a reset declined at the prompt.
FAILED = 1
#: Bad usage: an unknown subcommand or option, a bad value, a missing token or file.
USAGE = 2
#: The hub could not be reached (connection refused, timeout, TLS).
UNREACHABLE = 3
#: The hub refused the token (401/403): invalid, or without the scope the route needs.
REFUSED = 4


class CommandError(Exception):
    """Ends the command: ``message`` as one line on stderr, ``status`` as the exit status."""

    def __init__(
        self,
        message: str,
        status: int = FAILED,
        *,
        http_status: int | None = None,
        from_hub: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        #: The HTTP status of the answer that ended the command, if one did, and whether
        #: JupyterHub gave it (its JSON error), not a proxy in front of it.
        self.http_status = http_status
        self.from_hub = from_hub


def warn(message: str) -> None:
    """One line on stderr, prefixed with the command's name (control characters escaped)."""
    print(f"jupyter-token-cache: {visible(message)}", file=sys.stderr, flush=True)
