"""An identity provider for spawned notebook servers: JupyterHub's, with cached token checks.

Enable it from the spawner's command line, in ``jupyterhub_config.py``::

    c.Spawner.args = [
        "--ServerApp.identity_provider_class="
        "jupyter_token_cache.services.identity.CachedIdentityProvider",
    ]

It must be a command-line setting: ``jupyterhub-singleuser`` sets
``ServerApp.identity_provider_class`` itself after reading ``jupyter_server_config.py``
files, and only command-line settings win over it. The server's token then needs
``custom:token-cache:introspect`` and ``custom:token-cache:events``
(``c.Spawner.server_token_scopes``, held by the user through a role).
"""

from __future__ import annotations

from jupyterhub.services.auth import HubOAuth
from jupyterhub.singleuser.extension import JupyterHubIdentityProvider
from traitlets import default

from .auth import CachedHubOAuth


class CachedIdentityProvider(JupyterHubIdentityProvider):  # type: ignore[misc]  # untyped
    """jupyter-server's JupyterHub identity provider, checking tokens with CachedHubOAuth."""

    @default("hub_auth")
    def _default_hub_auth(self) -> HubOAuth:
        return CachedHubOAuth(parent=self)
