"""CachedHubAuthenticated: ``HubAuthenticated`` whose token checks never hold up the service's loop.

Notes
-----
JupyterHub's ``HubAuthenticated`` identifies the caller in ``get_current_user``, which
Tornado calls synchronously: ``HubAuth`` runs the check on its one background thread and
the service's event loop *waits* for it. While the hub is slow or frozen, every request —
one whose token is cached too — queues behind the hub calls of the requests before it:
with ``check_timeout = 2``, five new tokens and a cached one sent together are answered
after 2, 4, 6, 8 and 10 s.

This mixin identifies the caller in ``prepare`` instead, with ``HubAuth``'s asynchronous
API on the handler's own loop: a cached answer is a lookup, and a hub call is awaited
while other requests are served (at most ``max_concurrent_checks`` of them at once, each
within ``check_timeout``). Everything else is ``HubAuthenticated``'s: ``get_current_user``
then finds the caller already identified and applies the same rules (allowed users and
groups, the access scopes, the 403 for a valid token that may not use the service).
"""

from __future__ import annotations

from jupyterhub.services.auth import HubAuthenticated
from jupyterhub.utils import maybe_future

from .auth import CachedHubAuth


class CachedHubAuthenticated(HubAuthenticated):  # type: ignore[misc]  # jupyterhub is untyped
    """Put first in a handler's bases: ``class MyHandler(CachedHubAuthenticated, RequestHandler)``."""

    hub_auth_class = CachedHubAuth

    async def prepare(self) -> None:
        """Identify the caller on this handler's event loop, before the method runs."""
        await maybe_future(super().prepare())
        if self._finished:
            return
        await self.hub_auth.get_user(self, sync=False)  # remembered on the handler
        self.get_current_user()  # HubAuthenticated's rules, with no hub call left to make
