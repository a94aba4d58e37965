"""Real redis-server, memcached and PostgreSQL processes on free loopback ports, stopped by pid.

Used by the tests (through conftest fixtures) and by the benchmarks.
"""

from __future__ import annotations

import atexit
import contextlib
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
#: How often a server is started on new ports when another process took one first.
PORT_ATTEMPTS = 5
#: What a server says (in its log) when its port was taken (EADDRINUSE).
PORT_TAKEN = "in use"


def free_port() -> int:
    """A port nothing listens on now; another process may take it before we do, so the
    servers below start again on new ports when theirs was taken (``Server.start``)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself listens on ``port``, not merely whether something does:
    a server that lost its port to another program must not pass for started.

    Linux's /proc: the listening sockets on ``port`` (/proc/net/tcp, tcp6) among ``pid``'s
    open files. Elsewhere, whether the port accepts a connection.
    """
    try:
        sockets = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                for line in itertools.islice(f, 1, None):
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        sockets.add(f"socket:[{fields[9]}]")
        if not sockets:
            return False
        fds = f"/proc/{pid}/fd"
        for fd in os.listdir(fds):
            with contextlib.suppress(OSError):
                if os.readlink(os.path.join(fds, fd)) in sockets:
                    return True
        return False
    except (OSError, IndexError, ValueError):  # no /proc here
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return True
        except OSError:
            return False


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
    """One server process; ``kill``/``restart``/``pause``/``resume`` for fault tests.

    What the program prints goes to ``output`` (a file of its own), so that a server
    that fails to start is reported with its own last lines, not only its exit status.
    """

    binary = ""
    package = ""
    scheme = ""
    #: Seconds a start may take.
    start_timeout = 10.0

    def __init__(self) -> None:
        self.path = require_binary(self.binary, self.package)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.output = self._output_file()

    def _output_file(self) -> str:
        fd, path = tempfile.mkstemp(prefix=f"pytest-{self.binary}-", suffix=".out")
        os.close(fd)
        atexit.register(lambda: os.path.exists(path) and os.remove(path))
        return path

    @property
    def url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def popen_options(self) -> dict[str, Any]:
        """More arguments for ``subprocess.Popen`` (an environment, a user...)."""
        return {}

    def log_files(self) -> list[str]:
        """Where the server writes what it says: ``output``, and a log file of its own."""
        return [self.output]

    def pick_ports(self) -> None:
        """New ports, for a start again after another process took one."""
        self.port = free_port()

    def ready(self) -> bool:
        """Whether the started server serves: it listens on its port itself."""
        assert self.process is not None
        return listens(self.process.pid, self.port)

    def start(self) -> Server:
        """Start the server and wait until it serves; on a port another process took
        first, again on new ports (``PORT_ATTEMPTS`` times).

        Raises RuntimeError with the server's own last lines when it exits or does not
        serve within ``start_timeout``.
        """
        # a restart keeps its ports: clients of the server hold its address
        attempts = 1 if getattr(self, "_served", False) else PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            marks = {path: _size(path) for path in self.log_files()}
            with open(self.output, "ab") as out:
                self.process = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    **self.popen_options(),
                )
            failure = self._wait_ready()
            if failure is None:
                self._served = True
                return self
            said = self.last_lines(marks)
            if PORT_TAKEN in said and attempt < attempts:
                self.pick_ports()
                continue
            raise RuntimeError(f"{self.binary} {failure}; its last lines:\n{said or '(none)'}")
        raise AssertionError("unreachable")

    def _wait_ready(self) -> str | None:
        """None once the server serves; else what went wrong (it is then stopped)."""
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"exited with {self.process.returncode} (port {self.port})"
            try:
                if self.ready():
                    return None
            except Exception:  # noqa: BLE001, S110 - not serving yet
                pass
            time.sleep(0.02)
        self.kill()
        return f"did not serve on port {self.port} within {self.start_timeout:g} s"

    def last_lines(self, marks: dict[str, int] | None = None, count: int = 20) -> str:
        """The last ``count`` lines the server wrote (since ``marks``: offsets per file)."""
        lines: list[str] = []
        for path in self.log_files():
            with contextlib.suppress(OSError), open(path, "rb") as f:
                f.seek((marks or {}).get(path, 0))
                lines += f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-count:])

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


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


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
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ]

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
    start_timeout = 30.0
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
        self.log = self.output = os.path.join(self.dir, "postgres.log")
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
            "-D",
            self.data,
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-c",
            f"unix_socket_directories={self.dir}",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "max_connections=200",
        ]

    def popen_options(self) -> dict[str, Any]:
        # its own session: kill() reaches the backends too, not just the postmaster
        return {"cwd": self.dir, "start_new_session": True, **self._as_user()}

    def ready(self) -> bool:
        """The port opens before the server accepts logins: wait for a real one."""
        import psycopg2

        if not super().ready():  # ours, not another test's server on a port taken first
            return False
        psycopg2.connect(self._dsn("postgres"), connect_timeout=1).close()
        return True

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
        super().start()
        return self

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


class ReplicatedRedisServer(RedisServer):
    """A redis-server of a Sentinel set or a Cluster: its own directory, extra options."""

    def __init__(self, directory: str, *extra: str) -> None:
        super().__init__()
        self.dir = directory
        self.extra = list(extra)
        #: A Cluster node's bus port (port + 10000 may be out of range), or None.
        self.bus_port: int | None = None
        os.makedirs(directory, exist_ok=True)

    def command(self) -> list[str]:
        bus = ["--cluster-port", str(self.bus_port)] if self.bus_port else []
        return [
            *super().command(),
            "--dir",
            self.dir,
            "--logfile",
            self.logfile,
            "--repl-diskless-sync-delay",
            "0",  # a replica syncs at once, not after 5 s
            *bus,
            *self.extra,
        ]

    @property
    def logfile(self) -> str:
        return os.path.join(self.dir, "redis.log")

    def log_files(self) -> list[str]:
        return [self.output, self.logfile]

    def pick_ports(self) -> None:
        super().pick_ports()
        if self.bus_port:
            self.bus_port = free_port()

    def info(self, section: str) -> dict[str, str]:
        text = self.call("INFO", section)
        if isinstance(text, dict):  # redis-py parses INFO into a dict
            return {k: str(v) for k, v in text.items()}
        return dict(line.split(":", 1) for line in text.decode().splitlines() if ":" in line)


def _wait(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # noqa: BLE001, S110 - not up yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


class SentinelServer(Server):
    """One sentinel, from Debian's ``redis-sentinel`` (or the multi-call ``redis-server
    --sentinel``, the same program), with a config file of its own (sentinels rewrite it)."""

    binary = "redis-sentinel"
    package = "redis-sentinel"
    scheme = "redis"

    def __init__(self, directory: str, service: str, master: Server) -> None:
        try:
            self.path = require_binary("redis-sentinel", "redis-sentinel")
            self.args: list[str] = []
        except MissingBinary:
            self.path = require_binary("redis-server", "redis-server")
            self.args = ["--sentinel"]
        self.port = free_port()
        self.process = None
        self.output = self._output_file()
        self.dir = directory
        self.service = service
        self.master = master
        self.config = os.path.join(directory, "sentinel.conf")
        self._configured_port = 0
        os.makedirs(directory, exist_ok=True)

    def command(self) -> list[str]:
        if self._configured_port != self.port:  # the first start, or new ports: sentinels
            self._configured_port = self.port  # rewrite the file, which a restart keeps
            with open(self.config, "w") as f:
                f.write(
                    f"port {self.port}\nbind {LOOPBACK}\ndir {self.dir}\nprotected-mode no\n"
                    f"sentinel announce-ip {LOOPBACK}\n"
                    f"sentinel monitor {self.service} {LOOPBACK} {self.master.port} 2\n"
                    f"sentinel down-after-milliseconds {self.service} 1000\n"
                    f"sentinel failover-timeout {self.service} 3000\n"
                    f"sentinel parallel-syncs {self.service} 1\n"
                )
        return [self.path, self.config, *self.args]

    def call(self, *args: Any) -> Any:
        return RedisServer.call(self, *args)  # type: ignore[arg-type]


class SentinelSet:
    """1 master, 1 replica and 3 sentinels on loopback ports, each in its own temp dir.

    Short ``down-after-milliseconds`` (1 s) and ``failover-timeout`` (3 s): a killed
    master is replaced within about 1-3 s.
    """

    service = "tokencache"

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="pytest-sentinel-")
        self.master = ReplicatedRedisServer(os.path.join(self.dir, "r0"))
        replica_dir = os.path.join(self.dir, "r1")
        self.replica = ReplicatedRedisServer(replica_dir)
        self.master.extra = ["--replica-announce-ip", LOOPBACK]
        self.servers = [self.master, self.replica]
        self.sentinels = [
            SentinelServer(os.path.join(self.dir, f"s{i}"), self.service, self.master)
            for i in range(3)
        ]
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        hosts = ",".join(f"{LOOPBACK}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def start(self) -> SentinelSet:
        self.master.start()  # first: the replica and the sentinels name its port
        self.replica.extra = [
            "--replicaof",
            LOOPBACK,
            str(self.master.port),
            "--replica-announce-ip",
            LOOPBACK,
        ]
        self.replica.start()
        _wait(lambda: self.replica.info("replication")["master_link_status"] == "up",
              "the replica to sync")  # fmt: skip
        for sentinel in self.sentinels:
            sentinel.start()
        for sentinel in self.sentinels:
            _wait(lambda s=sentinel: len(s.call("SENTINEL", "SENTINELS", self.service)) == 2
                  and len(s.call("SENTINEL", "REPLICAS", self.service)) == 1,
                  "the sentinels to find each other and the replica")  # fmt: skip
        return self

    def master_port(self) -> int:
        """The port of the master the sentinels name now."""
        _, port = self.sentinels[0].call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(port)

    def current_master(self) -> ReplicatedRedisServer:
        port = self.master_port()
        return next(s for s in self.servers if s.port == port)

    def kill_master(self) -> ReplicatedRedisServer:
        """SIGKILL the current master; return it (dead)."""
        master = self.current_master()
        master.kill()
        return master

    def wait_for_promotion(self, old_port: int, timeout: float = 30) -> float:
        """Wait until every sentinel names a new master that answers as one; when (monotonic)."""

        def promoted() -> bool:
            ports = {
                int(s.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)[1])
                for s in self.sentinels
            }
            if len(ports) != 1 or old_port in ports:
                return False
            server = next(s for s in self.servers if s.port in ports)
            return server.info("replication")["role"] == "master"

        _wait(promoted, "a new master", timeout)
        return time.monotonic()

    def dump(self) -> dict[str, bytes]:
        return self.current_master().dump()

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterSet:
    """A Redis Cluster of 3 masters and 3 replicas on loopback ports, each in its own temp
    dir, created with ``redis-cli --cluster create ... --cluster-replicas 1``.

    ``cluster-node-timeout`` is 1 s, so a killed master's replica takes over in ~1-3 s;
    ``cluster-require-full-coverage no`` keeps the other shards answering meanwhile.
    """

    def __init__(self) -> None:
        self.cli = require_binary("redis-cli", "redis-tools")
        self.dir = tempfile.mkdtemp(prefix="pytest-cluster-")
        self.servers: list[ReplicatedRedisServer] = []
        for i in range(6):
            node_dir = os.path.join(self.dir, f"n{i}")
            self.servers.append(ReplicatedRedisServer(node_dir))
        for server in self.servers:
            server.bus_port = free_port()
            server.extra = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", os.path.join(server.dir, "nodes.conf"),
                "--cluster-node-timeout", "1000",
                "--cluster-announce-ip", LOOPBACK,
                "--cluster-require-full-coverage", "no",
            ]  # fmt: skip
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{LOOPBACK}:{s.port}" for s in self.servers[:3])

    def start(self) -> RedisClusterSet:
        for server in self.servers:
            server.start()
        nodes = [f"{LOOPBACK}:{s.port}" for s in self.servers]
        done = subprocess.run(
            [self.cli, "--cluster", "create", *nodes, "--cluster-replicas", "1",
             "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create exited with {done.returncode}:\n"
                f"{(done.stdout + done.stderr)[-3000:]}"
            )
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 60) -> float:
        """Wait until every live node says cluster_state:ok, 3 masters serve the slots and
        every live replica is in sync; when (monotonic)."""

        def ok() -> bool:
            for server in self.live():
                info = server.call("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text:
                    return False
                replication = server.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
            return len(self.masters()) == 3

        _wait(ok, "the cluster to be ok", timeout)
        return time.monotonic()

    def replica_of(self, master: ReplicatedRedisServer) -> ReplicatedRedisServer:
        """The replica of ``master`` (each master has one)."""
        replica = master.call("INFO", "replication")["slave0"]  # redis-py parses it: a dict
        port = int(replica["port"])
        return next(s for s in self.servers if s.port == port)

    def wait_for_promotion(self, replica: ReplicatedRedisServer, timeout: float = 60) -> float:
        """Wait until ``replica`` is a master serving slots; when (monotonic)."""

        def promoted() -> bool:
            if replica.info("replication")["role"] != "master":
                return False
            nodes = replica.call("CLUSTER", "NODES")
            text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
            return any("myself,master" in line and len(line.split()) > 8
                       for line in text.splitlines())  # fmt: skip

        _wait(promoted, "the replica to take over", timeout)
        return time.monotonic()

    def election_log(self) -> list[str]:
        """The live nodes' log lines about failure detection and elections (diagnostics)."""
        lines = []
        for server in self.live():
            with open(os.path.join(server.dir, "redis.log"), errors="replace") as f:
                lines += [f"{server.port} {line.strip()}" for line in f
                          if any(w in line for w in ("ailover", "lection", "FAIL"))]  # fmt: skip
        return lines

    def live(self) -> list[ReplicatedRedisServer]:
        return [s for s in self.servers if s.process is not None and s.process.poll() is None]

    def masters(self) -> list[ReplicatedRedisServer]:
        return [s for s in self.live() if s.info("replication")["role"] == "master"]

    def dump(self) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for server in self.masters():
            found.update(server.dump())
        return found

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
