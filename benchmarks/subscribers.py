"""Event-stream subscribers for the benchmarks, in a process of their own.

``Subscribers(api_url, token, n)`` starts ``python -m benchmarks.subscribers``, which
opens ``n`` streams of ``GET {api_url}token-cache/events`` (its own connections, its own
event loop and interpreter, so neither the load generator nor the GIL delays them) and,
with ``record=True``, reports every event of the first stream with the moment it arrived
(``CLOCK_MONOTONIC``, the same clock across processes). The token goes over stdin;
closing stdin stops the streams and the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx


def now() -> float:
    """Seconds on the system-wide monotonic clock (comparable between processes)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class Subscribers:
    """``async with Subscribers(...) as s``: ``n`` streams connected; ``s.events`` if recording."""

    def __init__(
        self, api_url: str, token: str, n: int, *, record: bool = False, timeout: float = 60
    ) -> None:
        self.api_url, self.token, self.n = api_url, token, n
        self.record, self.timeout = record, timeout
        #: (arrival time, event) of the first stream, in order.
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._error: str | None = None

    async def __aenter__(self) -> Subscribers:
        args = [sys.executable, "-m", "benchmarks.subscribers", self.api_url, str(self.n)]
        self._process = await asyncio.create_subprocess_exec(
            *args, *(["--record"] if self.record else []), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=1 << 20, cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        assert self._process.stdin is not None
        self._process.stdin.write(self.token.encode() + b"\n")
        await self._process.stdin.drain()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        try:
            await asyncio.wait_for(self._ready.wait(), self.timeout)
            if self._error is not None:
                raise RuntimeError(f"event subscribers failed: {self._error}")
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for line in self._process.stdout:
            message = json.loads(line)
            if "event" in message:
                self.events.append((message["at"], message["event"]))
            elif "ready" in message:
                self._ready.set()
            elif "error" in message:
                self._error = message["error"]
            self._changed.set()
        if self._error is None:
            self._error = "the subscriber process ended"
        self._ready.set()
        self._changed.set()

    async def revoked(self, token_id: str, *, after: int, timeout: float = 10) -> float:
        """When the token-revoked event naming ``token_id`` arrived, among ``events[after:]``."""
        deadline = asyncio.get_running_loop().time() + timeout
        seen = after
        while True:
            for at, event in self.events[seen:]:
                if event.get("type") == "token-revoked" and token_id in event.get("token_ids", ()):
                    return at
            seen = len(self.events)
            if self._error is not None:
                raise RuntimeError(f"event subscribers failed: {self._error}")
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise RuntimeError(f"no token-revoked event for {token_id} within {timeout} s")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def stop(self) -> None:
        """Close the streams and wait for the process (terminate, then kill, if it lingers)."""
        process = self._process
        if process is None:
            return
        self._process = None
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except asyncio.TimeoutError:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 5)


# -- the subscriber process ---------------------------------------------------------------


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _subscribe(api_url: str, token: str, n: int, record: bool) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def watch_stdin() -> None:  # EOF on stdin (the parent closed it, or died): stop
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    opened = 0
    all_open = asyncio.Event()

    async def stream(client: httpx.AsyncClient, index: int) -> None:
        nonlocal opened
        async with client.stream("GET", "token-cache/events") as r:
            if r.status_code != 200:
                raise RuntimeError(
                    f"GET token-cache/events: {r.status_code} {(await r.aread())[:200]!r}"
                )
            fields: dict[str, str] = {}
            first = True
            async for line in r.aiter_lines():
                if first:  # "retry: ..." comes after the hub subscribed this stream
                    first = False
                    opened += 1
                    if opened == n:
                        all_open.set()
                if line == "":
                    if record and index == 0 and "data" in fields:
                        _say({"at": now(), "event": json.loads(fields["data"])})
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        raise RuntimeError(f"event stream {index} ended")

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    timeout = httpx.Timeout(30, read=None)
    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(
        base_url=api_url, headers=headers, limits=limits, timeout=timeout
    ) as client:
        tasks = [loop.create_task(stream(client, i)) for i in range(n)]
        stopping = loop.create_task(stop.wait())
        opening = loop.create_task(all_open.wait())
        try:
            done, _ = await asyncio.wait(
                [*tasks, opening, stopping], return_when=asyncio.FIRST_COMPLETED
            )
            if opening in done:
                _say({"ready": n})
                done, _ = await asyncio.wait(
                    [*tasks, stopping], return_when=asyncio.FIRST_COMPLETED
                )
            failed = [t for t in done if t in tasks]
            if failed:
                _say({"error": repr(failed[0].exception())})
                return 1
            return 0
        finally:
            for task in (*tasks, opening, stopping):
                task.cancel()
            await asyncio.gather(*tasks, opening, stopping, return_exceptions=True)


def main() -> None:
    api_url, n = sys.argv[1], int(sys.argv[2])
    token = sys.stdin.readline().strip()
    sys.exit(asyncio.run(_subscribe(api_url, token, n, "--record" in sys.argv[3:])))


if __name__ == "__main__":
    main()
