"""An identity provider for spawned notebook servers: jupyter-server's JupyterHub one, with cached checks.

Enable it in a spawned server with ``c.ServerApp.identity_provider_class =
"jupyter_token_cache.services.identity.CachedIdentityProvider"`` (a
``jupyter_server_config.py`` in the image), or from the spawner:
``c.Spawner.args = ["--ServerApp.identity_provider_class=jupyter_token_cache.services.identity.CachedIdentityProvider"]``.
The server's token then needs ``custom:token-cache:introspect`` and
``custom:token-cache:events`` (see ``c.Spawner.server_token_scopes`` in the docs).
"""

from __future__ import annotations

from jupyterhub.services.auth import HubOAuth
from jupyterhub.singleuser.extension import JupyterHubIdentityProvider
from traitlets import default

from .auth import CachedHubOAuth


class CachedIdentityProvider(JupyterHubIdentityProvider):
    """jupyter-server's JupyterHub identity provider, checking tokens with :class:`CachedHubOAuth`."""

    @default("hub_auth")
    def _default_hub_auth(self) -> HubOAuth:
        return CachedHubOAuth(parent=self)
