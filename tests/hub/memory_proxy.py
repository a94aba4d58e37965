"""A JupyterHub proxy that keeps its routes in a dict: the proxy contract without node."""

from __future__ import annotations

from typing import Any

from jupyterhub.proxy import Proxy
from traitlets import default


class MemoryProxy(Proxy):
    """Routes in memory; nothing listens on the public port (tests call the hub directly)."""

    @default("should_start")
    def _should_start_default(self) -> bool:
        return False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.routes: dict[str, dict[str, Any]] = {}

    async def add_route(self, routespec: str, target: str, data: dict[str, Any]) -> None:
        routespec = self.validate_routespec(routespec)
        self.routes[routespec] = {"routespec": routespec, "target": target, "data": data}

    async def delete_route(self, routespec: str) -> None:
        self.routes.pop(routespec, None)

    async def get_all_routes(self) -> dict[str, dict[str, Any]]:
        return dict(self.routes)
