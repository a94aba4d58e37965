"""The hub subcommands (stats, tokens, reset, events) against the real ``jupyterhub`` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..e2e.services import api_token
from ..hubprocess import HubProcess
from ..servers import MissingBinary, free_port, unavailable
from .cli import SCRIPT, cli, one_line_error

pytestmark = pytest.mark.e2e

CONFIG = """
from jupyter_token_cache import with_token_cache

c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.JupyterHub.load_roles.append({"name": "user", "scopes": ["self"]})
c.TokenCache.event_heartbeat = 0.5
c.TokenCache.services = {"dask": {"scopes": ["read:users!user"], "lifetime": 3600}}
"""

#: Every token a test handled: none may appear in the command's output.
SECRETS: list[str] = []


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    try:
        hub = HubProcess(tmp_path_factory.mktemp("cli"), CONFIG)
    except MissingBinary as e:
        unavailable(e)
    SECRETS.append(hub.service_token)
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def admin_env(hub: HubProcess) -> dict[str, str]:
    """What a hub-managed service with the admin role gets."""
    return {
        "JUPYTERHUB_API_URL": f"{hub.hub_url}/hub/api",
        "JUPYTERHUB_API_TOKEN": hub.service_token,
    }


def run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The command, checked never to show a token."""
    result = cli(*args, env=env, stdin=stdin)
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr, f"a token in the output of {args}"
    return result


def mint(hub: HubProcess, user: str) -> dict[str, dict[str, str]]:
    """A notebook and an internal (dask) token for a new API token of ``user``."""
    parent = api_token(hub, urllib.parse.quote(user, safe=""))["token"]
    SECRETS.append(parent)
    headers = {"Authorization": f"token {parent}"}
    minted = {}
    with httpx.Client(base_url=f"{hub.hub_url}/hub/api/token-cache/", headers=headers) as api:
        for kind, body in (("notebook", {}), ("internal", {"service": "dask"})):
            r = api.post(kind, json=body)
            assert r.status_code == 200, r.text
            minted[kind] = r.json()
            SECRETS.append(minted[kind]["token"])
    return minted


def hub_status(hub: HubProcess, token: str) -> int:
    headers = {"Authorization": f"token {token}"}
    return httpx.get(f"{hub.hub_url}/hub/api/user", headers=headers).status_code


def test_stats(admin_env: dict[str, str]) -> None:
    result = run(admin_env, "stats", "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["backend"] == "memory" and "mints" in stats and "by_kind" in stats

    table = run(admin_env, "stats")
    assert table.returncode == 0, table.stderr
    assert "backend" in table.stdout and "mints" in table.stdout


def test_tokens_lists_what_the_cache_minted(hub: HubProcess, admin_env: dict[str, str]) -> None:
    minted = mint(hub, "cli-alice")
    result = run(admin_env, "tokens", "--json")
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)
    ids = {t["id"] for t in items if t["user"] == "cli-alice"}
    assert {minted["notebook"]["id"], minted["internal"]["id"]} <= ids

    result = run(admin_env, "tokens", "--user", "cli-alice", "--kind", "internal", "--json")
    assert result.returncode == 0, result.stderr
    only = json.loads(result.stdout)
    assert [(t["id"], t["kind"], t["service"]) for t in only] == [
        (minted["internal"]["id"], "internal", "dask")
    ]

    table = run(admin_env, "tokens", "--user", "cli-alice")
    assert table.returncode == 0, table.stderr
    assert minted["notebook"]["id"] in table.stdout and "notebook" in table.stdout


def test_reset_with_revoke_asks_first(hub: HubProcess, admin_env: dict[str, str]) -> None:
    minted = mint(hub, "cli-bob")
    token = minted["notebook"]["token"]
    declined = run(admin_env, "reset", "--user", "cli-bob", "--revoke", stdin="no\n")
    assert declined.returncode == 1
    assert "nothing done" in declined.stderr
    assert hub_status(hub, token) == 200

    done = run(admin_env, "reset", "--user", "cli-bob", "--revoke", "-y", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["revoked"] >= 2
    assert hub_status(hub, token) == 403
    assert hub_status(hub, minted["internal"]["token"]) == 403


def test_reset_without_revoke_keeps_tokens(hub: HubProcess, admin_env: dict[str, str]) -> None:
    minted = mint(hub, "cli-carol")
    result = run(admin_env, "reset", "--user", "cli-carol")
    assert result.returncode == 0, result.stderr
    assert "cli-carol" in result.stdout
    assert hub_status(hub, minted["notebook"]["token"]) == 200


def test_events_prints_the_buffer_then_stops(hub: HubProcess, admin_env: dict[str, str]) -> None:
    minted = mint(hub, "cli-dave")
    result = run(admin_env, "events", "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    ids = {i for e in events if e["type"] == "token-minted" for i in e["token_ids"]}
    assert minted["notebook"]["id"] in ids

    table = run(admin_env, "events")
    assert table.returncode == 0, table.stderr
    assert "token-minted" in table.stdout and "user=cli-dave" in table.stdout


def test_events_follow_prints_new_events(hub: HubProcess, admin_env: dict[str, str]) -> None:
    follower = subprocess.Popen(  # noqa: S603 - our own console script
        [str(SCRIPT), "events", "--follow", "--json"],
        env={**admin_env, "PATH": str(Path(sys.executable).parent)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # minted before or after the stream opens: the replay or the stream has it
        minted = mint(hub, "cli-erin")
        deadline = time.monotonic() + 30
        assert follower.stdout is not None
        while True:
            line = follower.stdout.readline()
            assert line, f"the stream ended: {follower.stderr.read() if follower.stderr else ''}"
            event = json.loads(line)
            if minted["internal"]["id"] in event.get("token_ids", ()):
                break
            assert time.monotonic() < deadline, "no event for the new token"
    finally:
        follower.terminate()
        follower.wait(10)


def test_a_hub_that_is_down(admin_env: dict[str, str]) -> None:
    env = {**admin_env, "JUPYTERHUB_API_URL": f"http://127.0.0.1:{free_port()}/hub/api"}
    result = run(env, "stats")
    assert result.returncode == 3
    assert "cannot reach the hub" in one_line_error(result)


def test_a_token_without_the_scope_names_it(hub: HubProcess, admin_env: dict[str, str]) -> None:
    plain = api_token(hub, "cli-frank")["token"]
    SECRETS.append(plain)
    env = {**admin_env, "JUPYTERHUB_API_TOKEN": plain}
    for command in ("stats", "tokens", "events"):
        result = run(env, command)
        assert result.returncode == 4, result.stderr
        line = one_line_error(result)
        assert "403" in line and "custom:token-cache:admin" in line, line


def test_bad_usage_is_one_line_and_status_2(admin_env: dict[str, str]) -> None:
    for args in (
        ("tokens", "--kind", "bogus"),
        ("stats", "--bogus"),
        ("nonsense",),
        ("tokens", "--user"),
    ):
        result = run(admin_env, *args)
        assert result.returncode == 2, (args, result.stderr)
        one_line_error(result)
    missing = cli("stats", env={"JUPYTERHUB_API_URL": admin_env["JUPYTERHUB_API_URL"]})
    assert missing.returncode == 2
    assert "JUPYTERHUB_API_TOKEN" in one_line_error(missing)


def test_public_url_and_token_file(hub: HubProcess, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(hub.service_token + "\n")
    result = run({}, "stats", "--json", "--url", hub.url, "--token-file", str(token_file))
    assert result.returncode == 0, result.stderr
    assert "hits" in json.loads(result.stdout)


def test_jupyter_token_cache() -> None:
    """``jupyter token-cache`` finds the script (jupyter_core comes with the test extras)."""
    jupyter = Path(sys.executable).with_name("jupyter")
    assert jupyter.exists() or shutil.which("jupyter"), "jupyter (jupyter_core) is not installed"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    result = subprocess.run(  # noqa: S603 - jupyter_core's command
        [str(jupyter), "token-cache", "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "check-config" in result.stdout


# -- bad input (issue 23): a clear error, never the token; output for people escaped ---------


@pytest.mark.parametrize("end", ["\x00", "\x1b", "\x7f", "\x1b[2J", "é"])
def test_a_token_with_a_control_character_is_a_usage_error_that_never_shows_it(
    admin_env: dict[str, str], tmp_path: Path, end: str
) -> None:
    """It was exit 3, "cannot reach the hub", with the HTTP library's header error echoing
    the whole token."""
    secret = "a" * 32
    token_file = tmp_path / "token"
    token_file.write_text(secret + end + "\n")
    url = admin_env["JUPYTERHUB_API_URL"]
    cases = [(("stats", "--url", url, "--token-file", str(token_file)), {})]
    if "\x00" not in end:  # no environment variable can hold NUL
        cases.append((("stats", "--url", url), {"JUPYTERHUB_API_TOKEN": secret + end}))
    for args, env in cases:
        result = cli(*args, env=env)
        assert result.returncode == 2, result.stderr
        line = one_line_error(result)
        assert secret not in result.stdout + result.stderr
        assert "control character" in line or "not ASCII" in line, line


#: Lower case, as the hub normalizes names.
EVIL = "mallory\n1999-01-01t00:00:00z #1 token-revoked user=alice\x1b[2j\x07"


def test_names_with_control_characters_are_printed_escaped(
    hub: HubProcess, admin_env: dict[str, str]
) -> None:
    """A user name holding a newline and escape codes forged whole lines in ``events`` and
    ``tokens`` and sent raw ESC bytes to the operator's terminal; ``--json`` was fine."""
    minted = mint(hub, EVIL)
    for command in (("events",), ("tokens",)):
        table = run(admin_env, *command)
        assert table.returncode == 0, table.stderr
        assert "\x1b" not in table.stdout and "\x07" not in table.stdout, command
        forged = [line for line in table.stdout.splitlines() if line.startswith("1999-01-01")]
        assert not forged, command
        assert "mallory\\n1999-01-01" in table.stdout and "\\x1b[2j" in table.stdout, command
    as_json = json.loads(run(admin_env, "tokens", "--json").stdout)
    assert [t["user"] for t in as_json if t["id"] == minted["notebook"]["id"]] == [EVIL]
