"""``jupyter-token-cache serve``: run one replica of the token-cache service."""

from __future__ import annotations

import asyncio
import logging
import signal

from tornado.log import enable_pretty_logging
from traitlets import Unicode, default

from ..cache.engine import TokenCacheConfigError
from ..cli.app import Command
from ..cli.errors import FAILED, OK, CommandError
from ..services.auth import CachedHubAuth, CachedTokenChecks
from ..services.checker import AnswerCache
from ..tokens.policy import TokenCache
from .edge import EdgeCache
from .replica import TokenCacheReplica


class ServeCommand(Command):
    """Serve the token API as a JupyterHub service; run as many replicas as needed."""

    description = """Serve the token-cache REST API (notebook, internal, introspect,
    exchange, upstream, stats, tokens, reset) as a JupyterHub service, in front of the hub: token
    answers and introspections are cached on the shared backend and served without
    asking the hub; misses go to the hub's own routes. Run it as a managed service
    (c.JupyterHub.services with "command") or as external replicas behind the proxy; see
    docs/replicated.md."""
    examples = """
    jupyter-token-cache serve --config=/etc/jupyterhub/token_cache_config.py
    jupyter-token-cache serve --port=10102 --TokenCache.backend=redis --TokenCache.url=redis://127.0.0.1:6379/0
    """
    config_file = Unicode(
        "",
        config=True,
        help="""A Python config file (c.TokenCache..., c.CachedHubAuth..., ...), such as
        the file the hub loads its token-cache settings from, so that both read the same
        policy and backend. Options on the command line win over it.""",
    )
    aliases = {
        "config": "ServeCommand.config_file",
        "port": "TokenCacheReplica.port",
        "ip": "TokenCacheReplica.ip",
    }
    classes = [TokenCacheReplica, EdgeCache, TokenCache, CachedHubAuth, CachedTokenChecks,
               AnswerCache]  # fmt: skip

    @default("log_level")
    def _log_level_default(self) -> int:
        return logging.INFO  # a server: say where it listens, and what it waits for

    def run(self) -> int:
        if self.config_file:
            try:
                self.load_config_file(self.config_file)
            except OSError as e:
                raise CommandError(
                    f"cannot read {self.config_file}: {e.strerror}", FAILED
                ) from None
        enable_pretty_logging()
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per hub request
        try:
            asyncio.run(self.serve())
        except (RuntimeError, TokenCacheConfigError) as e:
            raise CommandError(str(e), FAILED) from None
        return OK

    async def serve(self) -> None:
        """Start the replica, answer until SIGTERM or SIGINT, then close."""
        replica = TokenCacheReplica(parent=self, log=self.log)
        app = await replica.start()
        server = app.listen(replica.port, replica.ip, xheaders=True)
        self.log.info(
            "Token cache replica listening at http://%s:%i%s", replica.ip, replica.port,
            replica.prefix,
        )  # fmt: skip
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.stop()
        await replica.close()
