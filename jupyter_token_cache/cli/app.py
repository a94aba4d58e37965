"""``jupyter-token-cache``: the Application, its subcommands and the options they share."""

from __future__ import annotations

import os
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
from traitlets import Bool, Float, TraitError, Unicode, default
from traitlets.config import Application
from traitlets.config.loader import ArgumentError, KVArgParseConfigLoader, _KVArgParser

from .._version import __version__
from ..tokens.models import printable
from .errors import FAILED, OK, USAGE, CommandError, warn
from .http import Hub
from .output import visible


def _unwrapped(method: Any) -> Any:
    """``method`` without traitlets' ``catch_config_error``, which logs and exits 1."""
    return getattr(method, "__wrapped__", method)


class _Parser(_KVArgParser):
    """argparse, but an error is an exception (one line from :func:`main`), not usage + exit."""

    def error(self, message: str) -> Any:
        raise ArgumentError(message)


class _Loader(KVArgParseConfigLoader):
    """An unknown option is an error (traitlets warns and goes on)."""

    parser_class = _Parser

    def load_config(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().load_config(*args, **kwargs)
        except ArgumentError as e:
            option = re.match(r"argument (-{1,2})([\w.-]+): expected one argument", str(e))
            if option is None:
                raise
            dashes, name = option.groups()
            for alias, target in self.aliases.items():
                if name == target:  # flatten_flags made every alias "Class.trait"
                    raise ArgumentError(
                        f"{'-' * min(len(alias), 2)}{alias} needs a value"
                    ) from None
            if name in self.aliases:
                raise ArgumentError(f"{dashes}{name} needs a value") from None
            raise ArgumentError(f"unknown option {dashes}{name}") from None

    def _handle_unrecognized_alias(self, arg: str) -> None:
        raise ArgumentError(f"unknown option --{arg}")


class Command(Application):
    """A subcommand (or the top command): its bad usage is a :class:`CommandError`, status 2.

    Notes
    -----
    traitlets wraps parsing in ``catch_config_error``, which logs "Bad config
    encountered" and exits with 1; here parsing errors reach :func:`main`, which prints
    one line and exits 2, as command-line tools do for usage errors.
    """

    version = __version__
    json_output = Bool(
        False,
        config=True,
        help="""Print JSON for scripts (one document; for events, one object per line)
        instead of tables for people.""",
    )
    #: Set by :meth:`start`; :func:`main` exits with it.
    status: int = OK
    #: How many positional arguments the command takes.
    positional = 0

    flags = {"json": ({"Command": {"json_output": True}}, "Print JSON for scripts.")}

    def initialize(self, argv: Any = None) -> None:
        self.parse_command_line(argv)
        if self.subapp is None and len(self.extra_args) > self.positional:
            extra = self.extra_args[self.positional]
            if self.subcommands:
                raise CommandError(
                    f"unknown command {extra!r} (commands: {', '.join(self.subcommands)})",
                    USAGE,
                )
            raise CommandError(f"unexpected argument {extra!r} (see --help)", USAGE)

    def parse_command_line(self, argv: Any = None) -> None:
        _unwrapped(Application.parse_command_line)(self, argv)

    def _create_loader(
        self, argv: Any, aliases: Any, flags: Any, classes: Any
    ) -> KVArgParseConfigLoader:
        return _Loader(
            argv, aliases, flags, classes=classes, log=self.log, subcommands=self.subcommands
        )

    def initialize_subcommand(self, subc: str, argv: Any = None) -> None:
        _unwrapped(Application.initialize_subcommand)(self, subc, argv)

    def start(self) -> None:
        if self.subapp is not None:
            self.subapp.start()
            self.status = getattr(self.subapp, "status", OK)
        else:
            self.status = self.run()

    def run(self) -> int:
        """Do the command's work; return the exit status."""
        raise CommandError(
            f"a command is required: {', '.join(self.subcommands or ())} (see --help)", USAGE
        )

    def out(self, text: str = "") -> None:
        """The command's answer, on stdout, each line through :func:`visible`."""
        print("\n".join(map(visible, text.split("\n"))), flush=True)


class HubCommand(Command):
    """A subcommand that calls the hub's REST API: where the hub is, and which token."""

    url = Unicode(
        config=True,
        help="""The hub's API URL (http://127.0.0.1:8081/hub/api) or public URL
        (https://hub.example.org; /hub/api is added). Default: $JUPYTERHUB_API_URL, which
        a hub-managed service gets.""",
    )
    token_file = Unicode(
        "",
        config=True,
        help="""A file holding the API token (its first line). Default: the token in
        $JUPYTERHUB_API_TOKEN. The token needs admin:users or custom:token-cache:admin
        (events: also custom:token-cache:events).""",
    )
    timeout = Float(
        10.0,
        config=True,
        help="""Seconds to wait for the hub to connect and answer.""",
    )

    aliases = {
        "url": "HubCommand.url",
        "token-file": "HubCommand.token_file",
        "timeout": "HubCommand.timeout",
    }

    @default("url")
    def _url_default(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "")

    def hub(self) -> Hub:
        """A client for the hub, or a usage error naming what is missing."""
        if not self.url:
            raise CommandError("no hub URL: set JUPYTERHUB_API_URL or pass --url", USAGE)
        try:
            parsed = urllib.parse.urlparse(self.url)
            valid = parsed.scheme in ("http", "https") and bool(parsed.hostname)
        except ValueError:
            valid = False
        if not valid:
            raise CommandError(
                f"--url must be an http(s) URL such as http://127.0.0.1:8081/hub/api, "
                f"not {self.url!r}",
                USAGE,
            )
        token = self._token()
        try:
            return Hub(self.url, token, timeout=self.timeout)
        except httpx.InvalidURL as e:
            raise CommandError(f"--url is not a URL httpx can use: {e}", USAGE) from None

    def _token(self) -> str:
        """The API token, from --token-file or $JUPYTERHUB_API_TOKEN; never in an error.

        A token is printable ASCII without spaces: one with a control character (a file
        ending in NUL, ESC or DEL) or non-ASCII text is a usage error naming where it came
        from, before the HTTP library refuses it with an error that echoes the header.
        """
        if self.token_file:
            try:
                lines = Path(self.token_file).read_text().splitlines()
            except (OSError, UnicodeDecodeError) as e:
                reason = getattr(e, "strerror", None) or type(e).__name__
                raise CommandError(f"cannot read {self.token_file}: {reason}", USAGE) from None
            token, source = lines[0].strip() if lines else "", self.token_file
            if not token:
                raise CommandError(f"{self.token_file} holds no token", USAGE)
        else:
            token, source = (
                os.environ.get("JUPYTERHUB_API_TOKEN", "").strip(),
                "JUPYTERHUB_API_TOKEN",
            )
            if not token:
                raise CommandError("no token: set JUPYTERHUB_API_TOKEN or pass --token-file", USAGE)
        if not printable(token) or " " in token:
            raise CommandError(
                f"the token in {source} holds a control character, a space or non-ASCII text "
                "(a token is printable ASCII): check how it was written",
                USAGE,
            )
        return token


class TokenCacheApp(Command):
    """The top command; ``jupyter token-cache`` when jupyter_core is installed."""

    name = "jupyter-token-cache"
    description = """Operate the JupyterHub token cache: its counters, the tokens it
    minted, resets, its event stream, and the hub's configuration file.
    Commands that call the hub read its URL and token from JUPYTERHUB_API_URL and
    JUPYTERHUB_API_TOKEN (or --url and --token-file). Exit status: 0 ok, 1 error or
    problems found, 2 bad usage, 3 hub unreachable, 4 refused by the hub."""
    examples = """
    jupyter-token-cache stats
    jupyter-token-cache tokens --user alice --json
    jupyter-token-cache reset --user alice --revoke
    jupyter-token-cache events --follow
    jupyter-token-cache check-config /etc/jupyterhub/jupyterhub_config.py
    jupyter-token-cache generate-config -f token_cache_config.py
    """
    subcommands = {
        "stats": (
            "jupyter_token_cache.cli.admin.StatsCommand",
            "Counters of the cache: hits, misses, mints, backend health.",
        ),
        "tokens": (
            "jupyter_token_cache.cli.admin.TokensCommand",
            "The live tokens the cache minted (--user, --kind, --service).",
        ),
        "reset": (
            "jupyter_token_cache.cli.admin.ResetCommand",
            "Forget cached tokens (--user NAME); with --revoke, delete them in the hub too.",
        ),
        "events": (
            "jupyter_token_cache.cli.admin.EventsCommand",
            "Print the buffered lifecycle events; --follow to keep printing new ones.",
        ),
        "serve": (
            "jupyter_token_cache.serve.app.ServeCommand",
            "Serve the token API as a (replicated) JupyterHub service.",
        ),
        "check-config": (
            "jupyter_token_cache.cli.config.CheckConfigCommand",
            "Check a jupyterhub_config.py's token cache settings, offline.",
        ),
        "generate-config": (
            "jupyter_token_cache.cli.config.GenerateConfigCommand",
            "Print (or write) every setting with its default and help, commented.",
        ),
    }


def run(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return its exit status."""
    app = TokenCacheApp()
    try:
        app.initialize(argv)
        app.start()
    except CommandError as e:
        warn(e.message)
        return e.status
    except (TraitError, ArgumentError) as e:
        warn(f"{' '.join(str(e).split())} (see --help)")
        return USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return app.status
    except Exception as e:  # noqa: BLE001 - a bug: still one line, never a traceback
        warn(f"unexpected {type(e).__name__}: {' '.join(str(e).split())} (please report it)")
        return FAILED
    return app.status


def main() -> None:
    """The console script."""
    sys.exit(run())
