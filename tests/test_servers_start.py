"""The test servers start reliably: a port another process took between ``free_port()`` and
the server's start is not a lost test, and a server that cannot start says why.

A fresh clone's ``./run test`` once lost a test on a loaded machine: a Redis Cluster
node's port was taken by another process after it was picked, and the failure read only
"redis-server exited with 1", the server's own words sent to /dev/null.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from .hubprocess import HubProcess
from .servers import (
    LOOPBACK,
    MemcachedServer,
    MissingBinary,
    RedisClusterSet,
    RedisServer,
    Server,
    unavailable,
)


@contextmanager
def taken(port: int) -> Iterator[socket.socket]:
    """Another program listening on ``port`` (the race the retry is for, made certain)."""
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, port))
        squatter.listen()
        yield squatter


def made(kind: type[Server]) -> Server:
    try:
        return kind()
    except MissingBinary as e:
        pytest.skip(str(e))  # the server tests themselves fail under CI when it is missing


@pytest.mark.parametrize("kind", [RedisServer, MemcachedServer])
def test_a_taken_port_means_new_ports_not_a_lost_test(kind: type[Server]) -> None:
    server = made(kind)
    picked = server.port
    with taken(picked):
        server.start()  # the squatter answers connections: only the server's own socket counts
        try:
            assert server.port != picked
            assert server.process is not None and server.process.poll() is None
            if isinstance(server, RedisServer):
                assert server.call("PING") is True
        finally:
            server.stop()


def test_a_cluster_node_whose_port_was_taken_joins_on_another() -> None:
    cluster = RedisClusterSet()
    picked = cluster.servers[4].port
    bus = cluster.servers[5].bus_port
    assert bus is not None
    try:
        with taken(picked), taken(bus):
            cluster.start()
        assert cluster.servers[4].port != picked and cluster.servers[5].bus_port != bus
        assert len(cluster.masters()) == 3
    finally:
        cluster.stop()


def test_a_server_that_cannot_start_says_why_in_its_own_words() -> None:
    server = made(RedisServer)
    server.command = lambda: [server.path, "--port", str(server.port), "--no-such-option", "x"]  # type: ignore[method-assign]
    with pytest.raises(RuntimeError) as failed:
        server.start()
    message = str(failed.value)
    assert message.startswith(f"redis-server exited with 1 (port {server.port}); its last lines:")
    assert "no-such-option" in message  # what redis-server itself printed


def test_a_restart_keeps_its_port() -> None:
    server = made(RedisServer)
    server.start()
    try:
        port = server.port
        server.restart()
        assert server.port == port and server.call("PING") is True
    finally:
        server.stop()


def test_a_hub_whose_public_port_was_taken_starts_on_another(tmp_path: Path) -> None:
    """The ``jupyterhub`` command with configurable-http-proxy (tests/hubprocess.py)."""
    try:
        hub = HubProcess(tmp_path, "")
    except MissingBinary as e:
        unavailable(e)
    picked = hub.port
    with taken(picked):
        try:
            hub.start()
            assert hub.port != picked and httpx.get(f"{hub.url}/hub/api/").is_success
        finally:
            hub.stop()
    assert "EADDRINUSE" in hub.log()  # the proxy's first start failed on the squatter
