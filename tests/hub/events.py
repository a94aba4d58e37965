"""A Server-Sent Events reader for the hub's event stream, over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx


class EventReader:
    """Read ``GET /hub/api/token-cache/events`` in the background; events land in ``events``."""

    def __init__(
        self, client: httpx.AsyncClient, token: str, last_event_id: str | None = None
    ) -> None:
        # a client of its own: the hub fixture's response hooks read whole bodies
        self.client = httpx.AsyncClient(base_url=client.base_url, timeout=30)
        self.headers = {"Authorization": f"token {token}"} if token else {}
        if last_event_id is not None:
            self.headers["Last-Event-ID"] = last_event_id
        self.events: list[dict[str, Any]] = []
        #: The stream's ``open`` event: ``since`` and ``position``.
        self.opening: dict[str, Any] | None = None
        self.raw: list[str] = []
        self.heartbeats = 0
        self.status: int | None = None
        self._opened = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        async with self.client.stream(
            "GET", "api/token-cache/events", headers=self.headers, timeout=None
        ) as r:
            self.status = r.status_code
            self._opened.set()
            if r.status_code != 200:
                return
            fields: dict[str, str] = {}
            async for line in r.aiter_lines():
                self.raw.append(line)
                if line.startswith(":"):
                    self.heartbeats += 1
                elif line == "":
                    if fields.get("event") == "open":  # how the stream vouches, not an event
                        self.opening = json.loads(fields["data"])
                    elif "data" in fields:
                        self.events.append(
                            {**json.loads(fields["data"]), "_event": fields.get("event")}
                        )
                    fields = {}
                else:
                    name, _, value = line.partition(": ")
                    fields[name] = value

    async def start(self) -> EventReader:
        self._task = asyncio.get_running_loop().create_task(self._read())
        await asyncio.wait_for(self._opened.wait(), 10)
        await asyncio.sleep(0.05)  # subscribed before the handler flushed its first bytes
        return self

    async def wait_for(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.events) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"only {len(self.events)} of {count} events arrived: {self.events}"
                )
            await asyncio.sleep(0.01)
        return self.events

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await self._task
        await self.client.aclose()


@contextlib.asynccontextmanager
async def reading(
    client: httpx.AsyncClient, token: str, last_event_id: str | None = None
) -> AsyncIterator[EventReader]:
    reader = await EventReader(client, token, last_event_id).start()
    try:
        yield reader
    finally:
        await reader.stop()
