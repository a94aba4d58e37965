"""Real redis-server and memcached processes on free loopback ports, stopped by pid.

Used by the tests (through conftest fixtures) and by the benchmarks.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Any, NoReturn

import pytest

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def unavailable(reason: object) -> NoReturn:
    """A program a test needs is missing: fail under CI (CI=true), skip elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} - required in CI", pytrace=False)
    pytest.skip(str(reason))


class MissingBinary(RuntimeError):
    """The server's program is not installed."""


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingBinary(f"{name} is not installed (apt-get install {package})")
    return path


class Server:
    """One server process; ``kill``/``restart``/``pause``/``resume`` for fault tests."""

    binary = ""
    package = ""
    scheme = ""

    def __init__(self) -> None:
        self.path = require_binary(self.binary, self.package)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Server:
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with {self.process.returncode}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"{self.binary} did not listen on {self.port}")

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets open but answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


class RedisServer(Server):
    binary = "redis-server"
    package = "redis-server"
    scheme = "redis"

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.path,
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip

    def dump(self) -> dict[str, bytes]:
        """Every key and value on the server (test-only inspection: KEYS is fine here)."""
        return {n.decode(): self.call("GET", n) or b"" for n in self.call("KEYS", "*")}

    def call(self, *args: Any) -> Any:
        """Run one command with a throwaway client (for tests that inspect the server)."""
        import redis

        client = redis.Redis(host=LOOPBACK, port=self.port)
        try:
            return client.execute_command(*args)
        finally:
            client.close()


class MemcachedServer(Server):
    binary = "memcached"
    package = "memcached"
    scheme = "memcached"

    def command(self) -> list[str]:
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        return [self.path, "-l", LOOPBACK, "-p", str(self.port), "-U", "0", "-m", "64", *user]

    def raw(self, command: str) -> bytes:
        """Send one text-protocol command; return the raw reply up to END."""
        with socket.create_connection((LOOPBACK, self.port), timeout=5) as s:
            s.sendall(command.encode() + b"\r\n")
            data = b""
            while not data.endswith(b"END\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data

    def ask(self, command: str) -> list[str]:
        """Send one text-protocol command; return the reply lines up to END."""
        return [line for line in self.raw(command).decode(errors="replace").splitlines() if line]

    def dump(self) -> dict[str, bytes]:
        """Every key and its raw ``get`` reply."""
        return {name: self.raw(f"get {name}") for name in self.keys()}

    def keys(self) -> dict[str, int]:
        """Every key on the server with its expiry (Unix time, -1 for none): metadump."""
        from urllib.parse import unquote

        found = {}
        for line in self.ask("lru_crawler metadump all"):
            if line.startswith("key="):
                fields = dict(part.split("=", 1) for part in line.split())
                found[unquote(fields["key"])] = int(fields["exp"])
        return found
