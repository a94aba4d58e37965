"""Write what a run measured: JSON with the raw figures, a markdown table with the ratios."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import scale as scale_section
from .timing import Figures


def machine() -> dict[str, Any]:
    import jupyterhub

    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "jupyterhub": jupyterhub.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


@dataclass(frozen=True)
class Ratio:
    """``ours / baseline`` within one group, at p50 latency or at c10 throughput."""

    label: str
    group: str
    ours: str
    baseline: str
    target: float | None = None
    metric: str = "p50"  # or "rps10"
    at_least: bool = False  # the target is a floor, not a ceiling

    def value(self, groups: dict[str, dict[str, Figures]]) -> float:
        ours, baseline = groups[self.group][self.ours], groups[self.group][self.baseline]
        if self.metric == "rps10":
            return ours.rps[10] / baseline.rps[10]
        return ours.percentile(50) / baseline.percentile(50)


def ratio_rows(groups: dict[str, dict[str, Figures]], ratios: list[Ratio]) -> list[dict[str, Any]]:
    rows = []
    for ratio in ratios:
        if ratio.group not in groups:
            continue
        value = ratio.value(groups)
        met = None
        if ratio.target is not None:
            met = value >= ratio.target if ratio.at_least else value <= ratio.target
        rows.append({"ratio": ratio.label, "value": value, "target": ratio.target,
                     "at_least": ratio.at_least, "met": met})  # fmt: skip
    return rows


def markdown(groups: dict[str, dict[str, Figures]], rows: list[dict[str, Any]], info: dict) -> str:
    lines = [
        f"Measured {info['date']} on {info['cpu']} ({info['cores']} cores), Python "
        f"{info['python']}, JupyterHub {info['jupyterhub']}.",
    ]
    if not groups:  # a run of some sections only (--only)
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "| path | contender | p50 µs | p95 µs | p99 µs | req/s c1 | req/s c10 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for group, contenders in groups.items():
        for name, figures in contenders.items():
            s = figures.summary()
            rps = [f"{figures.rps[c]:,.0f}" if c in figures.rps else "" for c in (1, 10)]
            lines.append(
                f"| {group} | {name} | {s['p50_us']:,.1f} | {s['p95_us']:,.1f} | "
                f"{s['p99_us']:,.1f} | {rps[0]} | {rps[1]} |"
            )
    lines += ["", "| ratio | value | target | met |", "|---|---:|---:|---|"]
    for row in rows:
        target = (
            "" if row["target"] is None else f"{'>=' if row['at_least'] else '<='} {row['target']}"
        )
        met = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(f"| {row['ratio']} | {row['value']:.2f}x | {target} | {met} |")
    return "\n".join(lines) + "\n"


def count_lines(counts: dict[str, Any], memory: dict[str, Any]) -> list[str]:
    """Counts and memory, each with its target."""
    if not counts and not memory:
        return []
    lines = ["", "| count | value | target | met |", "|---|---:|---:|---|"]
    for label, value in counts.items():
        if label.startswith("stampede"):
            target, met = "1", value == 1
        elif "jupyter-token-cache" in label:
            target, met = "<= 150 (sessions x services)", value <= 150
        else:
            target, met = "", None
        lines.append(
            f"| {label} | {value:,} | {target} | {'' if met is None else ('yes' if met else '**no**')} |"
        )
    for n, m in memory.items():
        big = int(n) >= 100_000
        lines.append(
            f"| memory backend, bytes per entry at {int(n):,} entries (keys and values included; "
            f"the store's own share {m['bytes_per_entry_overhead']:.0f}) | {m['bytes_per_entry_total']:.0f} | "
            f"{'<= 1024' if big else ''} | {('yes' if m['bytes_per_entry_total'] <= 1024 else '**no**') if big else ''} |"
        )
        lines.append(f"| memory backend, max_size={int(n):,} holds after {int(n) * 11 // 10:,} inserts | "
                     f"{m['max_size_holds']} | True | {'yes' if m['max_size_holds'] else '**no**'} |")  # fmt: skip
    return lines


def event_lines(events: dict[str, Any]) -> list[str]:
    """The Events section (suite 9): revocation to event; hits, throughput with subscribers."""
    rev, hit, tp = events["revocation"], events["hit_latency"], events["throughput"]
    n_idle = tp["subscribers"]
    met = "yes" if hit["met"] else "**no**"
    lines = [
        "",
        "### Events",
        "",
        f"One hub ({events['backend']} backend); SSE subscribers on the hub's own port in a "
        "process of their own, API calls on other connections.",
        "",
        "| revocation → token-revoked event (DELETE response to event at the subscriber) | value |",
        "|---|---:|",
        f"| revocations measured (after {rev['warmup']} unmeasured) | {rev['n']:,} |",
        f"| p50 µs | {rev['p50_us']:,.1f} |",
        f"| p95 µs | {rev['p95_us']:,.1f} |",
        f"| p99 µs | {rev['p99_us']:,.1f} |",
        f"| min / max µs | {rev['min_us']:,.1f} / {rev['max_us']:,.1f} |",
        f"| events that arrived before the response (latency <= 0) | {rev['before_response']:,} |",
        f"| for scale: DELETE round trip p50 µs | {rev['delete_round_trip_p50_us']:,.1f} |",
        "",
        f"| with {hit['subscribers']} subscriber connected | p50 µs | p95 µs | p99 µs |",
        "|---|---:|---:|---:|",
    ]
    for name, s in hit["figures"].items():
        lines.append(f"| {name} | {s['p50_us']:,.1f} | {s['p95_us']:,.1f} | {s['p99_us']:,.1f} |")
    lines += [
        "",
        "| ratio | value | target | met |",
        "|---|---:|---:|---|",
        f"| notebook hit / GET /hub/api/user p50, {hit['subscribers']} subscriber connected | "
        f"{hit['ratio']:.2f}x | <= {hit['target']} | {met} |",
        "",
        f"| req/s at concurrency {tp['concurrency']} ({tp['requests']:,} requests in "
        f"{tp['rounds']} alternating bursts) | no subscriber | {n_idle} idle subscribers "
        "| ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, rps in tp["rps"].items():
        lines.append(
            f"| {name} | {rps['0']:,.0f} | {rps[str(n_idle)]:,.0f} | {rps['ratio']:.2f}x |"
        )
    return lines


def exchange_lines(exchange: dict[str, Any]) -> list[str]:
    """The Token exchange section (suite 11): hit against miss, provider calls."""
    lat, calls = exchange["latency"], exchange["provider_calls"]
    lines = [
        "",
        "### Token exchange",
        "",
        "`POST /hub/api/token-cache/exchange` at a `jupyterhub` process, verifying by "
        "introspection at a real oidc-provider (both on loopback).",
        "",
        f"| exchange ({lat['rounds']} rounds: 1 miss, {lat['hits_per_round']} hits) "
        "| n | p50 µs | p95 µs | p99 µs |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in lat["figures"].items():
        lines.append(
            f"| {name} | {s['n']} | {s['p50_us']:,.1f} | {s['p95_us']:,.1f} | {s['p99_us']:,.1f} |"
        )
    lines += [
        "",
        f"Miss p50 / hit p50: {lat['miss_over_hit_p50']:.1f}x.",
        "",
        f"{calls['exchanges']:,} exchanges from {calls['users']} users (one upstream token "
        f"each, concurrency 10): {calls['provider_calls']:,} provider calls "
        f"({calls['introspections']:,} introspections), "
        f"{calls['per_10000']:,.1f} per 10,000 exchanges; "
        f"{calls['exchanges_per_second']:,.0f} exchanges/s.",
    ]
    return lines


#: The bursts of the Upstream tokens section: at expiry, then (the documented approach) once
#: the provider's userinfo refuses the expired token.
UPSTREAM_BURSTS = ("at_expiry", "userinfo_refuses")


def upstream_lines(upstream: dict[str, Any]) -> list[str]:
    """The Upstream tokens section (suite 15): a hit against the hub's floor, provider calls."""
    lat = upstream["latency"]
    lines = [
        "",
        "### Upstream tokens in notebooks",
        "",
        "A `jupyterhub` process with GenericOAuthenticator (auth state on) logged in through a "
        f"real oidc-provider whose tokens live {upstream['lifetime']} s and whose refresh tokens "
        "rotate (a spent one revokes the grant); requests at the hub's own port.",
        "",
        f"| contender ({lat['rounds']} rounds of {lat['per_round']}) | n | p50 µs | p95 µs "
        "| p99 µs | req/s c=1 | req/s c=10 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in lat["figures"].items():
        rps = s.get("rps", {})
        lines.append(
            f"| {name} | {s['n']} | {s['p50_us']:,.1f} | {s['p95_us']:,.1f} | {s['p99_us']:,.1f} "
            f"| {rps.get('1', 0):,.0f} | {rps.get('10', 0):,.0f} |"
        )
    lines += ["", f"Hit p50 / `GET /hub/api/user` p50: {lat['hit_over_user_p50']:.2f}x.", ""]
    approaches = [("token cache", upstream["cached"])]
    if "documented" in upstream:
        approaches.append(("documented approach", upstream["documented"]))
    lines += [
        "| approach | requests | provider calls | per 10,000 | refreshes (refused) | userinfo "
        "| grants revoked | tokens | req/s | grant alive after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, c in approaches:
        lines.append(
            f"| {name} | {c['requests']:,} | {c['provider_calls']:,} | {c['per_10000']:,.1f} "
            f"| {c['refreshes']} ({c['refused']}) | {c['userinfo']} | {c['grants_revoked']} "
            f"| {c['tokens']} | {c['requests_per_second']:,.0f} "
            f"| {'yes' if c['grant_alive'] else 'no'} |"
        )
    bursts = [(name, c[when]) for name, c in approaches for when in UPSTREAM_BURSTS if when in c]
    if bursts:
        lines += [
            "",
            "| 100 requests at once | s past expiry | refreshes (refused), each round "
            "| grant revoked | distinct tokens (active after), each round |",
            "|---|---:|---|---|---|",
        ]
        lines += [burst_row(name, rounds) for name, rounds in bursts]
        lines += [
            "",
            "The documented approach refreshes only when the provider's userinfo refuses the "
            f"access token, which oidc-provider does {upstream['clock_tolerance']} s past its "
            "expiry (its clock tolerance); each round's first burst comes before that.",
        ]
    return lines


def burst_row(name: str, rounds: list[dict[str, Any]]) -> str:
    """One row of the bursts at expiry: each round's figures, and in how many the grant died."""
    refreshes = ", ".join(f"{b['refreshes']} ({b['refused']})" for b in rounds)
    tokens = ", ".join(f"{b['tokens']} ({b['handed_out_active']})" for b in rounds)
    revoked = sum(b["grants_revoked"] > 0 for b in rounds)
    return (
        f"| {name} | {rounds[0]['seconds_past_expiry']} | {refreshes} "
        f"| in {revoked} of {len(rounds)} rounds | {tokens} |"
    )


def service_lines(services: dict[str, Any]) -> list[str]:
    """The Services section (suite 10): latency, hub calls, revocation delay, memory per answer."""
    lat, calls, rev, mem = (services[k] for k in ("latency", "hub_calls", "revocation", "memory"))
    lines = [
        "",
        "### Services",
        "",
        "The example service (`examples/service/whoami.py`) in processes of its own beside one "
        "hub; requests go to the service's own port (not through the proxy).",
        "",
        f"| `GET /services/{{name}}/` ({lat['rounds']} alternating rounds of {lat['per_round']}) "
        "| p50 µs | p95 µs | p99 µs |",
        "|---|---:|---:|---:|",
    ]
    for name, s in lat["figures"].items():
        lines.append(f"| {name} | {s['p50_us']:,.1f} | {s['p95_us']:,.1f} | {s['p99_us']:,.1f} |")
    lines += ["", "| ratio | value | target | met |", "|---|---:|---:|---|"]
    for row in lat["ratios"]:
        target = "" if row["target"] is None else f"<= {row['target']}"
        met = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(f"| {row['ratio']} | {row['value']:.2f}x | {target} | {met} |")
    shares = ", ".join(f"{name} {share:.0%}" for name, share in lat["cpu_share"].items())
    lines += ["", f"CPU share (of one core) while measuring latency: {shares}.", ""]
    lines += [
        f"| hub calls for {calls['requests']:,} requests ({calls['users']} users, one token "
        f"each, {calls['replicas']} replicas, concurrency 10) | GET /hub/api/user "
        "| introspect | total | load generator CPU |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, c in calls.items():
        if isinstance(c, dict):
            share = c["cpu_share"]["load generator (this process)"]
            lines.append(
                f"| {label} | {c['get_user']:,} | {c['introspect']:,} | {c['hub_calls']:,} "
                f"| {share:.0%} |"
            )
    sent, answered, to, after = (
        rev[k] for k in ("from_sent", "from_answered", "to_event", "after_event")
    )
    plain = rev["plain_sample"]
    met = "yes" if rev["met"] else "**no**"
    lines += [
        "",
        f"| revocation delay, CachedHubAuth ({rev['n']:,} revocations after {rev['warmup']} "
        "unmeasured) | p50 ms | p95 ms | p99 ms | target | met |",
        "|---|---:|---:|---:|---:|---|",
        f"| DELETE sent → first refusal received | {sent['p50_us'] / 1e3:,.2f} "
        f"| {sent['p95_us'] / 1e3:,.2f} | {sent['p99_us'] / 1e3:,.2f} "
        f"| p99 <= {rev['target_p99_ms']:.0f} | {met} |",
        f"| DELETE answered → first refusal received | {answered['p50_us'] / 1e3:,.2f} "
        f"| {answered['p95_us'] / 1e3:,.2f} | {answered['p99_us'] / 1e3:,.2f} | | |",
        f"| DELETE sent → token-revoked event at a subscriber | {to['p50_us'] / 1e3:,.2f} "
        f"| {to['p95_us'] / 1e3:,.2f} | {to['p99_us'] / 1e3:,.2f} | | |",
        f"| token-revoked event at a subscriber → first refusal received "
        f"| {after['p50_us'] / 1e3:,.2f} | {after['p95_us'] / 1e3:,.2f} "
        f"| {after['p99_us'] / 1e3:,.2f} | | |",
        "",
        f"For scale: DELETE round trip p50 / p99 {rev['delete_round_trip_p50_us'] / 1e3:,.2f} / "
        f"{rev['delete_round_trip_p99_us'] / 1e3:,.2f} ms, of which the hub's own time (its "
        f"request log) {rev['delete_in_hub_p50_us'] / 1e3:,.2f} / "
        f"{rev['delete_in_hub_p99_us'] / 1e3:,.2f} ms; one "
        f"poll p50 {rev['poll_round_trip_p50_us'] / 1e3:,.2f} ms; refusals received before the "
        f"DELETE's response: {rev['refused_before_answer']:,}"
        + _valid_refused(rev)
        + ". Plain HubAuth serves its cached "
        f"answer up to cache_max_age ({plain['plain_cache_max_age']} s): a token deleted 1 s "
        f"ago got {plain['after_1s']} (before the DELETE: {plain['before']}).",
        "",
        "CPU share (of one core) while revoking: "
        + ", ".join(f"{name} {share:.0%}" for name, share in rev["cpu_share"].items())
        + ".",
        "",
        "| memory per cached answer, CachedHubAuth memory backend (tracemalloc, in-process) "
        "| value |",
        "|---|---:|",
        f"| bytes per answer over {mem['answers']:,} answers (store, keys, eviction index) "
        f"| {mem['bytes_per_answer']:,.0f} |",
        f"| for scale: one answer as JSON, bytes ({mem['scopes_per_answer']} scopes) "
        f"| {mem['answer_json_bytes']:,} |",
    ]
    return lines


def _valid_refused(rev: dict[str, Any], series: str = "") -> str:
    """Tokens refused before their DELETE was sent (results from before the count have none)."""
    if "valid_refused" not in rev:
        return ""
    return (
        f"; {series + ': ' if series else ''}tokens refused before their DELETE was sent "
        f"(valid tokens refused, rounds not measured): **{rev['valid_refused']:,}**"
    )


def _ms(us: float) -> str:
    return f"{us / 1e3:,.1f}"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


#: The CPU columns of the replicas' throughput table: a name in the figures, its heading.
REPLICA_CPU = (("wrk", "wrk CPU"), ("proxy", "proxy CPU"), ("token-cache", "replica a CPU"),
               ("token-cache-b", "replica b CPU"), ("redis", "redis CPU"), ("hub", "hub CPU"),
               ("measured processes", "all measured"), ("machine", "machine busy"))  # fmt: skip


def replica_lines(replicas: dict[str, Any]) -> list[str]:
    """The Replicated mode section (suite 12): throughput, hub requests, revocation delay."""
    lines = ["", "### Replicated mode", ""]
    if "skipped" in replicas:
        return lines + [f"Not measured: {replicas['skipped']}."]
    setup, loads = replicas["setup"], replicas["throughput"]
    lines += [
        "One `jupyterhub` (sqlite) with configurable-http-proxy and two replicas of "
        "`jupyter-token-cache serve` (`token-cache`, `token-cache-b`) on one redis-server, "
        f"all on loopback, {setup['cores']} cores. Load: {setup['wrk']}, {setup['threads']} "
        f"threads, {setup['connections']} connections, `POST notebook` with the credentials of "
        f"{setup['users']} users in turn (each warmed first: every answer a hit); "
        f"{setup['rounds']} round(s) of {setup['seconds_per_run']} s per load, the loads in "
        "turn. Direct to 2 replicas: one wrk thread per replica's port, as a load balancer "
        "would spread connections.",
        "",
        "| load | req/s | p50 ms | p99 ms | non-2xx | not a hit | "
        + " | ".join(title for _, title in REPLICA_CPU)
        + " |",
        "|---|" + "---:|" * (5 + len(REPLICA_CPU)),
    ]
    for name, load in loads.items():
        cpu = load["cpu_share"]
        errors = load["non_2xx"] + load["connect_errors"] + load["read_errors"] + load["timeouts"]
        lines.append(
            f"| {name} | {load['rps']:,.0f} | {_ms(load['p50_us'])} | {_ms(load['p99_us'])} "
            f"| {errors:,} | {load['not_cached']:,} | "
            + " | ".join(f"{cpu[key]:.0%}" for key, _ in REPLICA_CPU)
            + " |"
        )
    lines += [
        "",
        "CPU: seconds of CPU per second of the load, of one core (200 % is the whole machine); "
        "*machine busy* counts every process, other users' too. Non-2xx includes socket "
        "errors and timeouts (wrk's).",
        "",
        "| ratio (req/s) | value |",
        "|---|---:|",
    ]
    lines += [f"| {row['ratio']} | {row['value']:.2f}x |" for row in replicas["ratios"]]
    lines += ["", *_replica_limits(replicas["limits"])]
    hits, mints = replicas["hub_requests"]["hits"], replicas["hub_requests"]["mints"]
    routes = ", ".join(f"{route} {n:,}" for route, n in mints["by_route"].items())
    per_mint = mints["per_mint"]
    lines += [
        "",
        "| hub requests (the hub's access log) | value | expected | met |",
        "|---|---:|---:|---|",
        f"| during the measured loads at the replicas ({hits['hits']:,} hits) "
        f"| {hits['hub_requests']:,} | 0 | {_met(hits['hub_requests'] == 0)} |",
        f"| per 10,000 hits | {hits['per_10000'] or 0:,.2f} | 0 | |",
        f"| per mint: {mints['credentials']} fresh credentials, each asked at both replicas "
        f"({mints['hub_mints']} mints; {routes or 'none'}) "
        f"| {per_mint or 0:.2f} | 2 | {_met(per_mint == 2)} |",
        "",
        "Per mint, 2 is one `POST /hub/api/token-cache/notebook` (the mint, with the caller's "
        "credential) and one `POST /hub/api/token-cache/introspect` (the credential, seen by "
        "no replica before: the other finds the answer on Redis).",
    ]
    return lines + _replica_revocation(replicas["revocation"])


def _replica_limits(limits: dict[str, Any]) -> list[str]:
    """What the 2-replica loads ran into: the CPU they used, what each request costs."""
    used = "; ".join(
        f"{name}: the processes measured used {load['measured processes']:.0%}, the machine "
        f"was busy {load['machine']:.0%}"
        for name, load in limits["two_replicas"].items()
    )
    costs = ", ".join(f"{name} {ms:.3f} ms" for name, ms in limits["cpu_ms_per_request"].items())
    other = limits["other_work"]
    return [
        "What limits the 2-replica / 1-replica ratio: with 2 cores, 200 % is the whole "
        "machine. When the load generator, the proxy, the replicas and redis add up to about "
        "that (or other work takes the rest), a second replica has no core of its own and the "
        "ratio measures the machine, not the replicas; it can only approach 2 where one "
        "replica's CPU, not the machine, was the limit. Through the proxy, every request also "
        "crosses one node process, configurable-http-proxy, a stage of its own that "
        f"replicas do not multiply. In this run, {used}. CPU time per request: {costs}.",
        "",
        f"Other work on the machine (busy minus the processes measured) took {other['mean']:.0%} "
        f"on average over the loads, {other['max']:.0%} at most, of the 200 %"
        + (": the figures are not those of a quiet machine." if other["max"] > 0.3 else "."),
    ]


def _replica_revocation(rev: dict[str, Any]) -> list[str]:
    sent, answered, between = rev["from_sent"], rev["from_answered"], rev["between_replicas"]
    reference, refusing = rev["cached_hub_auth"], rev["refusing_round_trip"]
    asked = rev["hub_requests_per_revocation"]
    scale = (
        f" CachedHubAuth in {reference['file']} (measured {reference['measured']}, another "
        f"run): p99 {reference['p99_ms']:.2f} ms."
        if reference
        else ""
    )
    return [
        "",
        f"| revocation delay at both replicas ({rev['n']:,} revocations after {rev['warmup']} "
        "unmeasured; a poller per replica at its own port) | p50 ms | p95 ms | p99 ms "
        "| target | met |",
        "|---|---:|---:|---:|---:|---|",
        f"| DELETE sent → both replicas refuse | {sent['p50_ms']:,.2f} | {sent['p95_ms']:,.2f} "
        f"| {sent['p99_ms']:,.2f} | p99 <= {rev['target_p99_ms']:.0f} | {_met(rev['met'])} |",
        f"| DELETE answered → both replicas refuse | {answered['p50_ms']:,.2f} "
        f"| {answered['p95_ms']:,.2f} | {answered['p99_ms']:,.2f} | | |",
        f"| first replica refusing → second | {between['p50_ms']:,.2f} "
        f"| {between['p95_ms']:,.2f} | {between['p99_ms']:,.2f} | | |",
        *_exposed("DELETE sent → the last answer still carrying the token", rev),
        *_introspected(rev),
        "",
        f"For scale: DELETE round trip p50 / p99 {rev['delete_round_trip']['p50_ms']:,.2f} / "
        f"{rev['delete_round_trip']['p99_ms']:,.2f} ms; one poll p50 / p99 "
        f"{rev['poll_round_trip']['p50_ms']:,.2f} / {rev['poll_round_trip']['p99_ms']:,.2f} ms "
        "(a hit); the refusing answer itself p50 / p99 "
        f"{refusing['p50_ms']:,.2f} / {refusing['p99_ms']:,.2f} ms; "
        f"refusals before the DELETE's answer: {rev['refused_before_answer']:,}"
        f"{_valid_refused(rev)}{_valid_refused(rev.get('introspect') or {}, 'introspection')}"
        f".{scale} "
        "A replica refuses a revoked token by answering with another one: told by the hub's "
        "event, it asks the hub for a new token, so the delay here includes that miss, where "
        "CachedHubAuth's refusal needs no hub call; the introspection rows measure that "
        "case at the replicas (a service asking them whether the token is still active). "
        "The rows of the last answer still carrying the token bound how long after the "
        "DELETE was sent a caller could get it at all (the later refusal is the new token's "
        "mint). "
        "Hub requests per revocation: "
        + (", ".join(f"{route} {n:.2f}" for route, n in asked.items()) or "none")
        + ".",
    ]


def _introspected(rev: dict[str, Any]) -> list[str]:
    """The introspection series' rows (results from before it existed have none)."""
    inactive = rev.get("introspect")
    if not inactive:
        return []
    sent, answered = inactive["from_sent"], inactive["from_answered"]
    return [
        f"| introspection: DELETE sent → both replicas answer inactive | {sent['p50_ms']:,.2f} "
        f"| {sent['p95_ms']:,.2f} | {sent['p99_ms']:,.2f} | p99 <= {rev['target_p99_ms']:.0f} "
        f"| {_met(inactive['met'])} |",
        f"| introspection: DELETE answered → both inactive | {answered['p50_ms']:,.2f} "
        f"| {answered['p95_ms']:,.2f} | {answered['p99_ms']:,.2f} | | |",
        *_exposed("introspection: DELETE sent → the last answer still active", inactive),
    ]


def _exposed(label: str, rev: dict[str, Any]) -> list[str]:
    """How long after the DELETE the token was still handed out (0 when it was not)."""
    late = rev.get("served_after_sent")
    if not late:
        return []
    return [
        f"| {label} | {late['p50_ms']:,.2f} | {late['p95_ms']:,.2f} | {late['p99_ms']:,.2f} | | |"
    ]


def restart_lines(restarts: dict[str, Any], image: str | None = None) -> list[str]:
    """The Restarts section (suite 13): requests/s after a restart against the steady state,
    and the hub calls of the first pass against the distinct entries it relied on."""
    setup, load = restarts["setup"], restarts["load"]
    before, after = (
        ", ".join(f"{x:.2f}" for x in load[k]) for k in ("loadavg_before", "loadavg_after")
    )
    lines = [
        "",
        "### Restarts",
        "",
        "One `jupyterhub` (sqlite), two replicas of `jupyter-token-cache serve` and the "
        "example `CachedHubAuth` service (`whoami`) on one redis-server, all on loopback "
        f"({load['cores']} cores). {setup['credentials_per_route']} credentials per route "
        f"({setup['users']} users), warmed where they are measured; requests at concurrency "
        f"{setup['concurrency']} (threads, a client each). Steady state: "
        f"{setup['steady_passes']} passes over the credentials just before the restart; then "
        "the first and the second pass once the process answers again (after a hub restart: "
        f"once every follower's stream is back). {setup['repeats']} restart(s) of each kind: "
        "a row gives the one whose first pass had the median ratio to its steady state (the "
        "range over all in brackets); hub calls: the most any of them made.",
        "",
        "| process | restart | route | down / back after s | steady req/s | first pass req/s "
        "| first / steady | first / new credentials | second pass req/s | second / steady "
        "| p99 ms steady / first "
        "| hub calls, first pass | distinct entries | per entry | expected | met "
        "| hub calls, second pass |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in restarts["summary"]:
        hub = row["process"] == "hub"
        per_entry = row["first_hub_calls_per_entry"]
        met = per_entry <= 1 if hub else row["first_hub_calls"] == 0
        lines.append(
            f"| {row['process']} | {row['restart']} | {row['route']} "
            f"| {row['down_s']:.1f} / {row['back_after_s']:.1f} | {row['steady_rps']:,.0f} | {row['first_rps']:,.0f} "
            f"| {row['first_ratio']:.2f}x{_spread(row['first_ratio_range'])} "
            f"| {row['first_over_miss']:.2f}x "
            f"| {row['second_rps']:,.0f} | {row['second_ratio']:.2f}x "
            f"| {row['steady_p99_ms']:,.1f} / {row['first_p99_ms']:,.1f} "
            f"| {row['first_hub_calls']:,} | {row['distinct_entries']:,} | {per_entry:.2f} "
            f"| {'<= 1' if hub else '0'} | {_met(met)} | {row['second_hub_calls']:,} |"
        )
    refused = sum(row["refused"] for row in restarts["summary"])
    renewed = {
        row["route"]: row["new_tokens_first"]
        for row in restarts["summary"]
        if row["process"] == "hub" and row["new_tokens_first"]
    }
    lines += [
        "",
        f"| for scale: a pass of {setup['credentials_per_route']} new credentials in the "
        "steady state (every entry a miss) | req/s | p99 ms | hub calls |",
        "|---|---:|---:|---:|",
        *(
            f"| {route} | {m['rps']:,.0f} | {m['p99_ms']:,.1f} | {m['hub_calls_total']:,} |"
            for route, m in restarts["misses"].items()
        ),
        "",
        "Distinct entries of a pass: a service request relies on the credential's cached "
        "answer; a notebook request on that answer and the edge entry holding the notebook "
        "token; an introspection on the token's answer and the caller's (one for all). Hub "
        "calls are the restarted process's own counters (a replica's: its introspections "
        "and the requests it passed to the hub). "
        f"Refusals in every pass: {refused:,} (a valid credential refused would be an outage)."
        + (
            " After a hub restart the notebook route hands out new tokens "
            f"({', '.join(f'{n:,}' for n in renewed.values())} of "
            f"{setup['credentials_per_route']}): the hub's own cache is in memory here, "
            "and the replica re-asks each edge entry."
            if renewed
            else ""
        ),
        "",
        f"Load average (1, 5, 15 min) before the section {before}, after it {after}; the "
        f"machine was {load['machine_busy']:.0%} busy over the section (other users' work "
        "included).",
    ]
    if image:
        lines += ["", f"![requests per second after a restart]({image})"]
    return lines


def _spread(bounds: list[float]) -> str:
    """`` (low-high)`` of a figure over repeats, or nothing for a single run."""
    low, high = bounds
    return "" if low == high else f" ({low:.2f}-{high:.2f})"


def plot_restarts(path: Path, restarts: dict[str, Any], info: dict[str, Any]) -> None:
    """First and second pass after each restart, over the steady state; hub calls per entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = restarts["summary"]
    labels = [f"{r['process']} {r['restart']}: {r['route']}" for r in rows]
    at = range(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 0.4 * len(rows) + 2), sharey=True)
    for offset, key, name in (
        (-0.2, "first_ratio", "first pass"),
        (0.2, "second_ratio", "second pass"),
    ):
        bars = left.barh([i + offset for i in at], [r[key] for r in rows], height=0.4, label=name)
        left.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    left.axvline(1, color="black", linewidth=0.8)
    left.set_yticks(list(at), labels, fontsize=8)
    left.set_xlabel("requests per second after the restart / steady state")
    left.invert_yaxis()
    left.legend()
    bars = right.barh(list(at), [r["first_hub_calls_per_entry"] for r in rows], height=0.6)
    right.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    right.set_xlim(0, max(1.2, *(r["first_hub_calls_per_entry"] + 0.2 for r in rows)))
    right.axvline(1, color="black", linewidth=0.8)
    right.set_xlabel("hub calls of the first pass per distinct entry")
    fig.suptitle(
        f"Restarts, {info['date']}: {info['cpu']} ({info['cores']} cores), "
        f"JupyterHub {info['jupyterhub']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot(path: Path, groups: dict[str, dict[str, Figures]], info: dict[str, Any]) -> None:
    """Latency distribution per path (log scale) and throughput at c1 and c10."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hub = {g: c for g, c in groups.items() if g.startswith("hub")}
    labels = [
        f"{g.removeprefix('hub, ').removesuffix(' backend')}: {n}"
        for g, c in hub.items()
        for n in c
    ]
    samples = [[x * 1e3 for x in f.samples] for c in hub.values() for f in c.values()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(16, 0.42 * len(labels) + 2), sharey=True)
    left.boxplot(samples, vert=False, showfliers=False, whis=(1, 99))
    left.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
    left.set_xscale("log")
    left.set_xlabel("latency, ms (box: p25-p75, whiskers: p1-p99)")
    left.invert_yaxis()
    figures = [f for c in hub.values() for f in c.values()]
    for offset, concurrency in ((-0.2, 1), (0.2, 10)):
        right.barh([i + 1 + offset for i in range(len(figures))], [f.rps.get(concurrency, 0) for f in figures],
                   height=0.4, label=f"concurrency {concurrency}")  # fmt: skip
    right.set_xlabel("requests per second")
    right.legend()
    fig.suptitle(f"jupyter-token-cache in a hub, {info['date']}: {info['cpu']} ({info['cores']} cores), "
                 f"JupyterHub {info['jupyterhub']}", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(
    out: Path,
    groups: dict[str, dict[str, Figures]],
    rows: list[dict[str, Any]],
    quick: bool,
    counts: dict[str, Any],
    memory: dict[str, Any],
    events: dict[str, Any] | None = None,
    sections: tuple[str, ...] = (),
    services: dict[str, Any] | None = None,
    exchange: dict[str, Any] | None = None,
    replicas: dict[str, Any] | None = None,
    upstream: dict[str, Any] | None = None,
    scale: dict[str, Any] | None = None,
    restarts: dict[str, Any] | None = None,
) -> str:
    """Write ``{quick,latest}.{json,md,png}``; a run of some ``sections`` is named after them."""
    info = machine()
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(groups, rows, info) + "\n".join(count_lines(counts, memory)) + "\n"
    plotted = any(g.startswith("hub") for g in groups)
    stem = "-".join(("quick" if quick else "latest", *sections))
    # a section's plot is the run's only one, or one beside others
    several = sum(map(bool, (plotted, scale, restarts))) > 1
    scale_png = f"{stem}-scale.png" if several else f"{stem}.png"
    restarts_png = f"{stem}-restarts.png" if several else f"{stem}.png"
    if plotted:
        table += f"\n![latency and throughput]({stem}.png)\n"
    if events:
        table += "\n".join(event_lines(events)) + "\n"
    if services:
        table += "\n".join(service_lines(services)) + "\n"
    if exchange:
        table += "\n".join(exchange_lines(exchange)) + "\n"
    if replicas:
        table += "\n".join(replica_lines(replicas)) + "\n"
    if upstream:
        table += "\n".join(upstream_lines(upstream)) + "\n"
    if scale:
        table += "\n".join(scale_section.lines(scale, scale_png)) + "\n"
    if restarts:
        table += "\n".join(restart_lines(restarts, restarts_png)) + "\n"
    data = {
        "machine": info,
        "quick": quick,
        "sections": list(sections),
        "groups": {g: {n: f.summary() for n, f in c.items()} for g, c in groups.items()},
        "ratios": rows,
        "counts": counts,
        "memory": memory,
        "events": events,
        "services": services,
        "exchange": exchange,
        "replicas": replicas,
        "upstream": upstream,
        "scale": scale,
        "restarts": restarts,
    }
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / f"{stem}.md").write_text(table)
    if plotted:
        plot(out / f"{stem}.png", groups, info)
    if scale:
        scale_section.plot(out / scale_png, scale, info)
    if restarts:
        plot_restarts(out / restarts_png, restarts, info)
    return table
