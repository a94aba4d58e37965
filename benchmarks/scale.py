"""Suite 14: a hub of 1,000 / 10,000 / 100,000 minted tokens, on SQLite and PostgreSQL.

One ``jupyterhub`` process per database and size (SQLite; PostgreSQL through psycopg 2
and psycopg 3), its database bulk-loaded while it runs (tests/bulk.py: N/2 users, each
with an API token and a notebook and an internal token minted from it, written as the
hub writes them). For each operation that may touch every row (the periodic sweep, the
admin listing's first and last page, a reset with revoke of every token) the benchmark
reports how long it took and the longest stall of the hub's event loop while it ran: the
worst latency of ``GET /hub/api/`` sent every 10 ms by a process of its own
(benchmarks/stall.py). Also the hit path against ``GET /hub/api/user`` on the loaded
hub, the hub's memory (RSS) before and after, and that every minted token is gone (403)
after the reset.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from jupyterhub import orm
from sqlalchemy import create_engine, text

from jupyter_token_cache.hub.lineage import LINEAGE, create_tables
from jupyter_token_cache.hub.observer import DatabaseObserver
from jupyter_token_cache.times import naive_utc
from tests import bulk
from tests.hubprocess import ROOT, HubProcess
from tests.servers import PostgresServer

from . import progress
from .timing import interleaved, machine_cpu_seconds

CONFIG = """
from jupyter_token_cache import with_token_cache
c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.JupyterHub.log_level = "WARN"
c.JupyterHub.db_url = "{db_url}"
c.TokenCache.services = {{"dask": {{"scopes": ["read:users!user"], "lifetime": 3600}}}}
c.TokenCache.sweep_interval = {sweep}

# the benchmark's inside view: every callback of the hub's event loop that ran 5 ms or
# longer, with the CPU time the loop's thread spent in it (two clock reads per callback)
# and what it ran (a task's coroutine, with its handler's class for a request)
import asyncio.events
import time

_loop_log = open("{loop_log}", "w", buffering=1)
_run = asyncio.events.Handle._run


def _what(callback):
    task = getattr(callback, "__self__", None)
    coro = task.get_coro() if hasattr(task, "get_coro") else None
    if coro is None:
        return getattr(callback, "__qualname__", type(callback).__name__)
    frame = getattr(coro, "cr_frame", None)
    owner = frame.f_locals.get("self") if frame is not None else None
    name = getattr(coro, "__qualname__", "task")
    return name if owner is None else f"{{type(owner).__name__}}:{{name}}"


def _timed_run(self):
    what = _what(self._callback)
    wall, cpu = time.perf_counter(), time.thread_time()
    try:
        return _run(self)
    finally:
        wall = time.perf_counter() - wall
        if wall >= 0.005:
            cpu = time.thread_time() - cpu
            what = what.replace(" ", "_")
            _loop_log.write(f"{{time.monotonic() - wall:.6f}} {{wall:.6f}} {{cpu:.6f}} {{what}}\\n")


asyncio.events.Handle._run = _timed_run
"""
DATABASES = ("sqlite", "postgresql+psycopg2", "postgresql+psycopg")
#: The acceptance: no operation holds the loop this long, hits within this of the floor.
STALL_TARGET_MS, HIT_TARGET = 50.0, 1.2
NOTEBOOK_HIT, GET_USER = "notebook hit", "GET /hub/api/user"
#: Before the measured sweep, every 50th minted token expires (2 %: at 100,000, the tokens
#: 1,000 active users' default lifetimes see expire in an hour, see docs/configuration.md).
EXPIRED_EVERY = 50


@dataclass
class Sizes:
    quick: bool
    minted: tuple[int, ...] = field(init=False)
    databases: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.minted = (1_000,) if self.quick else (1_000, 10_000, 100_000)
        self.databases = ("sqlite",) if self.quick else DATABASES
        #: Seconds between sweeps: the benchmark waits for one to measure it.
        self.sweep = 2 if self.quick else 15
        self.rounds, self.per_round = (2, 20) if self.quick else (10, 100)
        self.repeats = 2 if self.quick else 5


class Stalls:
    """The stall prober (benchmarks/stall.py) and what it saw."""

    def __init__(self, hub: HubProcess, workdir: Path, loop_log: Path) -> None:
        self.loop_log = loop_log
        self.path = workdir / "stalls.txt"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.stall", f"{hub.hub_url}/hub/api/", str(self.path)],
            cwd=ROOT,
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()

    def samples(self) -> list[tuple[float, float]]:
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        return [(float(a), float(b)) for a, b in (line.split() for line in lines if " " in line)]

    def quiet_ms(self, start: float, end: float) -> dict[str, float]:
        """The probes sent in [start, end], with nothing else going on: the floor."""
        took = sorted(t for sent, t in self.samples() if start <= sent <= end)
        if not took:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0, "n": 0}
        return {
            "p50": took[len(took) // 2] * 1e3,
            "p99": took[int(len(took) * 0.99)] * 1e3,
            "max": took[-1] * 1e3,
            "n": len(took),
        }

    def during(self, start: float, end: float) -> dict[str, Any]:
        """The probes overlapping [start, end] (monotonic seconds): the longest (the
        stall), p99, how many took the target or longer."""
        took = sorted(t for sent, t in self.samples() if sent <= end and sent + t >= start)
        lines = self.loop_log.read_text().splitlines() if self.loop_log.exists() else []
        held = [line.split(" ", 3) for line in lines if line.count(" ") == 3]
        inside = [
            (float(w), float(c), what)
            for at, w, c, what in held
            if float(at) <= end and float(at) + float(w) >= start
        ]
        longest = max(inside, default=(0.0, 0.0, ""))
        return {
            "stall_ms": took[-1] * 1e3 if took else 0.0,
            "p99_ms": took[int(len(took) * 0.99)] * 1e3 if took else 0.0,
            "probes": len(took),
            "over_target": sum(t * 1e3 >= STALL_TARGET_MS for t in took),
            # the longest callback of the hub's loop, and the most CPU one of them used
            "loop_ms": longest[0] * 1e3,
            "loop_cpu_ms": max((c for _, c, _ in inside), default=0.0) * 1e3,
            # that longest callback: its own CPU, and what it ran
            "longest_cpu_ms": longest[1] * 1e3,
            "longest_was": longest[2],
        }


class Busy:
    """How busy the whole machine was (other users' work included) since it was made: on
    a shared machine, what a stall figure of that stretch is worth."""

    def __init__(self) -> None:
        self.busy, self.total = machine_cpu_seconds()

    def share(self) -> float:
        busy, total = machine_cpu_seconds()
        return (busy - self.busy) / max(1e-9, total - self.total)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def database(kind: str, workdir: Path, postgres: PostgresServer | None) -> Iterator[str]:
    """A fresh database of ``kind``; its SQLAlchemy URL."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir}/jupyterhub.sqlite"
        return
    assert postgres is not None
    url = postgres.create_database().replace("+psycopg2:", f"+{kind.split('+')[1]}:")
    try:
        yield url
    finally:
        postgres.drop_database(url)


async def run(quick: bool) -> dict[str, Any]:
    """Each database at each size: times, stalls, hit ratios, RSS."""
    sizes = Sizes(quick)
    results: dict[str, Any] = {"sizes": list(sizes.minted), "databases": {}}
    postgres = PostgresServer().start() if any(d != "sqlite" for d in sizes.databases) else None
    try:
        for kind in sizes.databases:
            for minted in sizes.minted:
                progress.step(f"{kind}, {minted:,} minted tokens")
                with tempfile.TemporaryDirectory(prefix="jtc-bench-scale-") as tmp:
                    with database(kind, Path(tmp), postgres) as url:
                        one = await _one(url, minted, Path(tmp), sizes)
                results["databases"].setdefault(kind, {})[str(minted)] = one
    finally:
        if postgres is not None:
            postgres.stop()
    results["purge"] = _purge(500 if quick else 5_000)
    results["targets"] = _targets(results)
    return results


def _purge(rows: int) -> dict[str, Any]:
    """JupyterHub's own purge of ``rows`` expired minted tokens (SQLite, in this process):
    one flush, alone and with this extension's observer installed.

    For scale: what the hub's hourly purge would cost if the sweep did not delete minted
    tokens as they expire (``c.TokenCache.sweep_interval = 0``).
    """
    progress.step(f"JupyterHub's purge of {rows:,} expired rows, with and without the observer")
    found = {"rows": rows}
    for name, observed in (("alone", False), ("with the observer", True)):
        with tempfile.TemporaryDirectory(prefix="jtc-bench-purge-") as tmp:
            db = orm.new_session_factory(f"sqlite:///{tmp}/jupyterhub.sqlite")()
            create_tables(db.get_bind())
            db.add_all([orm.OAuthClient(identifier="jupyterhub"), orm.Role(name="user")])
            db.commit()
            bulk.load(db.get_bind(), rows // 2)
            _expire(db.get_bind(), 1)
            if observed:
                DatabaseObserver(db, lambda ended, changes: None, log=logging.getLogger()).install()
            started = time.perf_counter()
            orm.APIToken.purge_expired(db)
            found[f"{name} seconds"] = time.perf_counter() - started
            assert (
                not db.query(orm.APIToken).filter(orm.APIToken.note.like("jupyter-token%")).count()
            )
            db.close()
    return found


async def _one(url: str, minted: int, workdir: Path, sizes: Sizes) -> dict[str, Any]:
    loop_log = workdir / "loop.txt"
    config = CONFIG.format(db_url=url, sweep=sizes.sweep, loop_log=loop_log)
    hub = HubProcess(workdir / "hub", config).start()
    assert hub.process is not None
    stalls = Stalls(hub, workdir, loop_log)
    found: dict[str, Any] = {"rss_mb": {"started": rss_mb(hub.process.pid)}}
    try:
        engine = create_engine(url)
        loaded = bulk.load(engine, minted // 2, every=max(1, minted // 200))
        if engine.dialect.name == "postgresql":  # as autovacuum does for a table that grew
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
        found["load_seconds"] = loaded.seconds
        async with httpx.AsyncClient(base_url=f"{hub.hub_url}/hub/api/", timeout=600) as http:
            admin = {"Authorization": f"token {hub.service_token}"}
            quiet = time.monotonic()
            await asyncio.sleep(2)
            found["idle_probe_ms"] = stalls.quiet_ms(quiet, time.monotonic())
            found["rss_mb"]["loaded"] = rss_mb(hub.process.pid)
            found["hits"] = await _hits(http, loaded.parents[loaded.users[-1]], sizes)
            found["first revocation"] = await _first_revocation(http, admin, stalls, loaded)
            expired = _expire(engine, EXPIRED_EVERY)
            found["sweep"] = await _sweep(http, admin, stalls, sizes)
            found["sweep"]["expired"] = expired
            # the loaded tokens, the one the hit path minted, less what ended since
            live = minted + 1 - found["first revocation"]["revoked"] - expired
            found["listing"] = await _listing(http, admin, stalls, live, sizes)
            found["rss_mb"]["after sweeps and listings"] = rss_mb(hub.process.pid)
            found["reset"] = await _reset(http, admin, stalls, loaded, engine)
            await asyncio.sleep(1)
            found["rss_mb"]["after the reset"] = rss_mb(hub.process.pid)
        engine.dispose()
    finally:
        stalls.stop()
        hub.stop()
    return found


async def _hits(http: httpx.AsyncClient, parent: str, sizes: Sizes) -> dict[str, Any]:
    auth = {"Authorization": f"token {parent}"}
    contenders = {
        NOTEBOOK_HIT: lambda: http.post("token-cache/notebook", headers=auth, json={}),
        GET_USER: lambda: http.get("user", headers=auth),
    }
    for op in contenders.values():  # the first notebook request mints: the rest are hits
        (await op()).raise_for_status()
    figures = await interleaved(contenders, rounds=sizes.rounds, per_round=sizes.per_round)
    hit, floor = (figures[n].percentile(50) for n in (NOTEBOOK_HIT, GET_USER))
    return {"notebook_hit_p50_us": hit * 1e6, "get_user_p50_us": floor * 1e6, "ratio": hit / floor}


async def _first_revocation(
    http: httpx.AsyncClient, admin: dict[str, str], stalls: Stalls, loaded: bulk.Loaded
) -> dict[str, Any]:
    """One user's reset with revoke: the first revocation since the hub started, which
    compiles the statements every later one reuses (as a server stop would have, on a hub
    that has run a while)."""
    start, busy = time.monotonic(), Busy()
    r = await http.delete(
        f"token-cache/users/{loaded.users[0]}", params={"revoke": "true"}, headers=admin
    )
    end = time.monotonic()
    r.raise_for_status()
    await asyncio.sleep(0.1)
    return {
        "revoked": r.json()["revoked"],
        "seconds": end - start,
        **stalls.during(start, end),
        "machine_busy": busy.share(),
    }


async def _sweep(
    http: httpx.AsyncClient, admin: dict[str, str], stalls: Stalls, sizes: Sizes
) -> dict[str, Any]:
    """The next periodic sweep that starts from now: its time and the longest stall."""
    since, busy = time.time(), Busy()
    progress.step(f"  waiting for a sweep (every {sizes.sweep} s)")
    while True:
        sweep = (await http.get("token-cache/stats", headers=admin)).json()["sweep"]
        started = sweep.get("started")
        if started and _epoch(started) >= since:
            break
        await asyncio.sleep(0.2)
    start = time.monotonic() - (time.time() - _epoch(started))
    return {
        "seconds": sweep["seconds"],
        "walked": sweep["walked"],
        **stalls.during(start, start + sweep["seconds"]),
        "machine_busy": busy.share(),
    }


def _expire(engine: Any, every: int) -> int:
    """Make every ``every``-th minted token expired, as time does: the next sweep deletes
    them (what JupyterHub's hourly purge would otherwise do in one flush)."""
    past = {"past": naive_utc(time.time() - 60), "past_epoch": time.time() - 60, "every": every}
    with engine.begin() as conn:
        count = conn.execute(
            text(
                f"UPDATE {LINEAGE.name} SET token_expires_at = :past_epoch "  # noqa: S608
                "WHERE kind <> 'server' AND token_id % :every = 0"
            ),
            past,
        ).rowcount
        conn.execute(
            text(
                "UPDATE api_tokens SET expires_at = :past WHERE id % :every = 0 "
                "AND note LIKE 'jupyter-token-cache%'"
            ),
            past,
        )
    return int(count)


def _epoch(iso: str) -> float:
    from jupyter_token_cache.times import parse_iso8601

    return parse_iso8601(iso).timestamp()


async def _listing(
    http: httpx.AsyncClient, admin: dict[str, str], stalls: Stalls, minted: int, sizes: Sizes
) -> dict[str, Any]:
    """The first and the last page, ``repeats`` times each: median time, longest stall."""
    headers = {**admin, "Accept": "application/jupyterhub-pagination+json"}
    found: dict[str, Any] = {}
    for name, offset in (("first page", 0), ("deep page", minted - 1)):
        times, windows, busy = [], [], Busy()
        for _ in range(sizes.repeats):
            start = time.monotonic()
            r = await http.get(
                "token-cache/tokens", params={"offset": offset, "limit": 50}, headers=headers
            )
            end = time.monotonic()
            r.raise_for_status()
            assert r.json()["_pagination"]["total"] == minted and r.json()["items"]
            times.append(end - start)
            await asyncio.sleep(0.1)  # the probes that overlap it have come back
            windows.append(stalls.during(start, end))
        found[name] = {
            "seconds": statistics.median(times),
            "stall_ms": max(w["stall_ms"] for w in windows),
            "p99_ms": max(w["p99_ms"] for w in windows),
            "probes": sum(w["probes"] for w in windows),
            "over_target": sum(w["over_target"] for w in windows),
            **{
                k: max(windows, key=lambda w: w["loop_ms"])[k]
                for k in ("loop_ms", "longest_cpu_ms", "longest_was")
            },
            "loop_cpu_ms": max(w["loop_cpu_ms"] for w in windows),
            "machine_busy": busy.share(),
        }
    return found


async def _reset(
    http: httpx.AsyncClient, admin: dict[str, str], stalls: Stalls, loaded: bulk.Loaded, engine: Any
) -> dict[str, Any]:
    """A reset with revoke of every token, followed to its end; then every token is 403."""
    start, busy = time.monotonic(), Busy()
    r = await http.delete(
        "token-cache", params={"revoke": "true"}, headers={**admin, "Prefer": "respond-async"}
    )
    answered = time.monotonic() - start
    state = r.json()
    while state.get("state") == "running":
        await asyncio.sleep(0.1)
        state = (await http.get(f"token-cache/resets/{state['id']}", headers=admin)).json()
    end, busy_share = time.monotonic(), busy.share()
    await asyncio.sleep(0.1)
    assert state.get("state", "done") == "done", state
    statuses = set()
    for token in loaded.sample.values():
        statuses.add(
            (await http.get("user", headers={"Authorization": f"token {token}"})).status_code
        )
    with engine.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM api_tokens WHERE note LIKE 'jupyter-token-cache%'")
        ).scalar()
    return {
        "status": r.status_code,
        "answered_seconds": answered,
        "seconds": end - start,
        "revoked": state["revoked"],
        **stalls.during(start, end),
        "machine_busy": busy_share,
        "sampled_tokens": len(loaded.sample),
        "sampled_statuses": sorted(statuses),
        "minted_rows_left": left,
    }


def _targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The acceptance at the largest size of each database."""
    rows = []
    for kind, by_size in results["databases"].items():
        size = max(by_size, key=int)
        one = by_size[size]
        stalls = {
            "sweep": one["sweep"],
            "listing, first page": one["listing"]["first page"],
            "listing, deep page": one["listing"]["deep page"],
            "reset with revoke": one["reset"],
        }
        for op, found in stalls.items():
            ms = found["stall_ms"]
            rows.append(
                {
                    "what": f"{kind}, {int(size):,}: longest stall, {op} (p99 of its "
                    f"{found['probes']:,} probes {found['p99_ms']:.1f} ms, "
                    f"{found['over_target']} at {STALL_TARGET_MS:.0f} ms or more; "
                    f"longest callback of the hub's loop {found['loop_ms']:.1f} ms "
                    f"({found['longest_cpu_ms']:.1f} ms of CPU, `{found['longest_was']}`), most "
                    f"CPU in one callback {found['loop_cpu_ms']:.1f} ms; machine "
                    f"{found['machine_busy']:.0%} busy)",
                    "value": f"{ms:.1f} ms",
                    "target": f"< {STALL_TARGET_MS:.0f} ms",
                    "met": ms < STALL_TARGET_MS,
                }
            )
        ratio = one["hits"]["ratio"]
        rows.append(
            {
                "what": f"{kind}, {int(size):,}: notebook hit / GET /hub/api/user p50",
                "value": f"{ratio:.2f}x",
                "target": f"<= {HIT_TARGET}",
                "met": ratio <= HIT_TARGET,
            }
        )
        reset = one["reset"]
        gone = reset["sampled_statuses"] == [403] and reset["minted_rows_left"] == 0
        rows.append(
            {
                "what": f"{kind}, {int(size):,}: every minted token 403 after the reset "
                f"({reset['revoked']:,} revoked in {reset['seconds']:.1f} s)",
                "value": "yes" if gone else "no",
                "target": "yes",
                "met": gone,
            }
        )
    return rows


def lines(scale: dict[str, Any], plot: str | None) -> list[str]:
    """The markdown of the section."""
    out = [
        "",
        "### A hub of many tokens",
        "",
        "A `jupyterhub` per database and size, its database bulk-loaded (N minted tokens for "
        "N/2 users, notebook and internal); stall: the worst latency of `GET /hub/api/` sent "
        "every 10 ms by a process of its own while the operation ran (times in seconds, "
        "stalls in ms; idle probes for scale). The first revocation after the hub started "
        "(one user's reset, before the rest) compiles the statements the later ones reuse.",
        "",
        "| database | minted | load s | idle probe p50/max ms | sweep s (expired) | sweep stall | "
        "first page s | stall | deep page s | stall | reset s (202 in) | reset stall | "
        "hit / GET user | first revocation stall | RSS MB started → loaded → listed → reset |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for kind, by_size in scale["databases"].items():
        for size, one in by_size.items():
            first, deep = one["listing"]["first page"], one["listing"]["deep page"]
            reset, idle, rss = one["reset"], one["idle_probe_ms"], one["rss_mb"]
            out.append(
                f"| {kind} | {int(size):,} | {one['load_seconds']:.1f} | "
                f"{idle['p50']:.1f}/{idle['max']:.1f} | {one['sweep']['seconds']:.2f} "
                f"({one['sweep']['expired']:,}) | "
                f"{one['sweep']['stall_ms']:.1f} | {first['seconds']:.3f} | "
                f"{first['stall_ms']:.1f} | {deep['seconds']:.3f} | {deep['stall_ms']:.1f} | "
                f"{reset['seconds']:.1f} ({reset['answered_seconds'] * 1e3:.0f} ms) | "
                f"{reset['stall_ms']:.1f} | {one['hits']['ratio']:.2f}x | "
                f"{one['first revocation']['stall_ms']:.1f} | "
                + " → ".join(f"{v:.0f}" for v in rss.values())
                + " |"
            )
    purge = scale["purge"]
    out += [
        "",
        f"For scale, JupyterHub's own purge of {purge['rows']:,} expired minted tokens (one "
        f"flush, SQLite, in-process): {purge['alone seconds']:.2f} s alone, "
        f"{purge['with the observer seconds']:.2f} s with this extension's observer. The "
        "sweep deletes minted tokens as they expire, so the hub's purge finds none of them "
        "(the sweep rows above include 2 % of the tokens expired: `expired`).",
    ]
    out += ["", "| acceptance | value | target | met |", "|---|---:|---:|---|"]
    for row in scale["targets"]:
        out.append(
            f"| {row['what']} | {row['value']} | {row['target']} | "
            f"{'yes' if row['met'] else '**no**'} |"
        )
    if plot:
        out += ["", f"![cost against size]({plot})"]
    return out


def plot(path: Path, scale: dict[str, Any], info: dict[str, Any]) -> None:
    """Time and longest stall of each operation against the number of minted tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = {
        "sweep": lambda one: one["sweep"],
        "listing, first page": lambda one: one["listing"]["first page"],
        "listing, deep page": lambda one: one["listing"]["deep page"],
        "reset with revoke": lambda one: one["reset"],
    }
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    # an operation's colour and marker, a database's line style
    styles = dict(zip(scale["databases"], ("-", "--", ":"), strict=False))
    for kind, by_size in scale["databases"].items():
        sizes = sorted(by_size, key=int)
        xs = [int(s) for s in sizes]
        for (op, pick), color, marker in zip(ops.items(), "bgmr", "osDv", strict=True):
            style = {"color": color, "marker": marker, "linestyle": styles[kind]}
            label = f"{op} ({kind})"
            left.plot(xs, [pick(by_size[s])["seconds"] for s in sizes], label=label, **style)
            right.plot(xs, [pick(by_size[s])["stall_ms"] for s in sizes], label=label, **style)
    right.axhline(STALL_TARGET_MS, color="k", linewidth=0.8, label="target")
    for axis, title in ((left, "time, s"), (right, "longest event-loop stall, ms")):
        axis.set_xscale("log")
        axis.set_xlabel("minted tokens in the hub")
        axis.set_ylabel(title)
        axis.grid(True, which="both", alpha=0.3)
    left.set_yscale("log")
    right.legend(fontsize=6, ncol=2)
    fig.suptitle(
        f"jupyter-token-cache at scale, {info['date']}: {info['cpu']} ({info['cores']} "
        f"cores), JupyterHub {info['jupyterhub']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
