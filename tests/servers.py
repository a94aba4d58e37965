"""Real redis-server, memcached and PostgreSQL processes on free loopback ports, stopped by pid.

Used by the tests (through conftest fixtures) and by the benchmarks.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
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


def postgres_bindir() -> str:
    """The directory holding ``initdb`` and ``postgres``: PATH, then ``pg_config --bindir``,
    then the newest ``/usr/lib/postgresql/*/bin`` (Debian's package puts them only there)."""
    candidates = []
    found = shutil.which("initdb")
    if found:
        candidates.append(os.path.dirname(found))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            )
            candidates.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass

    def version(path: str) -> tuple[int, ...]:
        name = path.split(os.sep)[-2]
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if all(os.access(os.path.join(bindir, b), os.X_OK) for b in ("initdb", "postgres")):
            return bindir
    raise MissingBinary("initdb/postgres are not installed (apt-get install postgresql)")


def _traversable(path: str) -> bool:
    """Can any user reach entries under ``path`` (every ancestor has o+x)?"""
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


class PostgresServer(Server):
    """A throwaway cluster (``initdb`` in a fresh temp dir), ``postgres`` run directly so it
    is stopped by pid like the others; the temp dir is removed on ``stop``.

    postgres refuses to run as root: as root, the cluster belongs to (and runs as) the
    ``postgres`` system user, or ``nobody``.
    """

    binary = "postgres"
    package = "postgresql"
    scheme = "postgresql"
    _names = itertools.count()

    def __init__(self) -> None:
        bindir = postgres_bindir()
        self.initdb = os.path.join(bindir, "initdb")
        self.path = os.path.join(bindir, "postgres")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self.user = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            else:
                raise MissingBinary(
                    "running as root, and no 'postgres' or 'nobody' user to run postgres as"
                )
        base = tempfile.gettempdir()
        if self.user is not None and not _traversable(base):
            base = "/tmp"  # noqa: S108 - a parent the postgres user cannot enter
        self.dir = tempfile.mkdtemp(prefix="pytest-postgres-", dir=base)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        if self.user is not None:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        atexit.register(self.stop)  # a backstop: the session fixture stops it first

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}"

    def _as_user(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def command(self) -> list[str]:
        return [
            self.path,
            "-D", self.data,
            "-p", str(self.port),
            "-c", f"listen_addresses={LOOPBACK}",
            "-c", f"unix_socket_directories={self.dir}",
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
            "-c", "synchronous_commit=off",
            "-c", "max_connections=200",
        ]  # fmt: skip

    def _log_tail(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def start(self) -> PostgresServer:
        if not os.path.isdir(self.data):
            done = subprocess.run(
                [
                    self.initdb,
                    "-D",
                    self.data,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ],  # fmt: skip
                cwd=self.dir,
                capture_output=True,
                text=True,
                timeout=120,
                **self._as_user(),
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                )
        with open(self.log, "ab") as log:
            if self.user is not None:
                os.fchown(log.fileno(), self.user.pw_uid, self.user.pw_gid)
            # its own session: kill() reaches the backends too, not just the postmaster
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                **self._as_user(),
            )
        import psycopg2

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {self.process.returncode}:\n{self._log_tail()}"
                )
            try:  # the port opens before the server accepts logins: wait for a real one
                psycopg2.connect(self._dsn("postgres"), connect_timeout=1).close()
                return self
            except psycopg2.OperationalError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"postgres did not accept connections on {self.port}:\n{self._log_tail()}"
        )

    def _dsn(self, dbname: str) -> str:
        return f"host={LOOPBACK} port={self.port} user=postgres dbname={dbname}"

    def execute(self, sql: str) -> None:
        """Run one statement in the ``postgres`` database, outside a transaction."""
        import psycopg2

        conn = psycopg2.connect(self._dsn("postgres"), connect_timeout=10)
        try:
            conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def create_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL.

        The driver is named: SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3,
        and the tests install psycopg2.
        """
        name = f"test_{next(self._names)}_{uuid.uuid4().hex[:8]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg2://postgres@{LOOPBACK}:{self.port}/{name}"

    def drop_database(self, url: str) -> None:
        """Drop a database from ``create_database``, closing any connection still open to it."""
        import psycopg2

        name = url.rsplit("/", 1)[1]
        conn = psycopg2.connect(self._dsn("postgres"), connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                if conn.server_version >= 130000:
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                else:
                    cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                " WHERE datname = %s", (name,))  # fmt: skip
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            conn.close()

    def dump(self) -> dict[str, bytes]:
        """Nothing: the hub's own tables are not a cache backend (the secret scan skips them)."""
        return {}

    def kill(self) -> None:
        """SIGKILL to the postmaster and every backend (one process group)."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()

    def stop(self) -> None:
        """Fast shutdown (SIGINT: disconnect clients, no waiting for them), then remove the
        cluster."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
