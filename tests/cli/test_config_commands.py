"""check-config and generate-config: offline, on files as an operator writes them."""

from __future__ import annotations

import json
import subprocess
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from ..servers import RedisServer, free_port
from .cli import cli, one_line_error

GOOD = """
from jupyter_token_cache import with_token_cache

c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.JupyterHub.custom_scopes = {"custom:dask:use": {"description": "Use dask"}}
c.TokenCache.notebook_scopes = ["access:servers!user", "read:users!user", "custom:dask:use"]
c.TokenCache.services = {
    "dask": {"scopes": ["access:services!service=dask", "custom:dask:use"], "lifetime": 3600},
}
c.TokenCache.minimum_lifetime = 600
# users hold what notebooks and dask's tokens are given
c.JupyterHub.load_roles = [
    {"name": "user", "scopes": ["self", "access:services!service=dask", "custom:dask:use"]},
]
"""

SHARED = """
from jupyter_token_cache import with_token_cache

c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.TokenCache.backend = "redis"
c.TokenCache.url = "{url}"
"""


def check(tmp_path: Path, text: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "jupyterhub_config.py"
    path.write_text(text)
    return cli("check-config", str(path), *args, env=env)


def test_a_good_file(tmp_path: Path) -> None:
    result = check(tmp_path, GOOD)
    assert result.returncode == 0, result.stdout
    assert "no problems found" in result.stdout
    report = json.loads(check(tmp_path, GOOD, "--json").stdout)
    assert report["ok"] is True and report["problems"] == []


def test_an_unknown_scope(tmp_path: Path) -> None:
    text = GOOD + 'c.TokenCache.services["dask"]["scopes"].append("read:dask-clusters")\n'
    result = check(tmp_path, text)
    assert result.returncode == 1
    assert "TokenCache.services['dask']['scopes']" in result.stdout
    assert "read:dask-clusters" in result.stdout
    # a custom scope the file does not define is unknown too
    result = check(tmp_path, GOOD.replace("c.JupyterHub.custom_scopes", "ignored"))
    assert result.returncode == 1
    assert "custom:dask:use" in result.stdout


def test_a_lifetime_shorter_than_minimum_lifetime(tmp_path: Path) -> None:
    result = check(tmp_path, GOOD + "c.TokenCache.notebook_lifetime = 300\n", "--json")
    assert result.returncode == 1
    (problem,) = json.loads(result.stdout)["problems"]
    assert problem["setting"] == "TokenCache.notebook_lifetime"
    assert "minimum_lifetime" in problem["message"] and problem["fix"]


def test_redis_without_an_encryption_key(tmp_path: Path) -> None:
    result = check(tmp_path, SHARED.format(url=f"redis://127.0.0.1:{free_port()}/0"))
    assert result.returncode == 1
    assert "TokenCache.backend" in result.stdout and "encryption_key" in result.stdout


def test_a_malformed_crypt_key(tmp_path: Path) -> None:
    text = SHARED.format(url=f"redis://127.0.0.1:{free_port()}/0")
    result = check(tmp_path, text, JUPYTERHUB_CRYPT_KEY="not-a-key")
    assert result.returncode == 1
    assert "JUPYTERHUB_CRYPT_KEY: is malformed" in result.stdout
    assert "not-a-key" not in result.stdout


def test_a_backend_nobody_listens_on(tmp_path: Path, crypt_key: str) -> None:
    port = free_port()
    result = check(
        tmp_path, SHARED.format(url=f"redis://127.0.0.1:{port}/0"), JUPYTERHUB_CRYPT_KEY=crypt_key
    )
    assert result.returncode == 1
    assert f"redis server at 127.0.0.1:{port} does not answer" in result.stdout


@pytest.mark.redis
def test_a_reachable_redis(tmp_path: Path, redis_server: RedisServer, crypt_key: str) -> None:
    text = SHARED.format(url=redis_server.url) + f"c.TokenCache.encryption_key = {crypt_key!r}\n"
    result = check(tmp_path, text)
    assert result.returncode == 0, result.stdout
    assert crypt_key not in result.stdout


def test_invalid_values_and_unknown_settings_are_each_named(tmp_path: Path) -> None:
    text = GOOD + 'c.TokenCache.max_size = "lots"\nc.TokenCache.notebok_lifetime = 60\n'
    result = check(tmp_path, text)
    assert result.returncode == 1
    assert "TokenCache.max_size" in result.stdout and "TokenCache.notebok_lifetime" in result.stdout
    assert "2 problems found" in result.stdout


def test_a_file_that_does_not_load(tmp_path: Path) -> None:
    result = check(tmp_path, "import no_such_module_here\n")
    assert result.returncode == 1
    assert "does not load" in result.stdout and "Traceback" not in result.stdout + result.stderr
    missing = cli("check-config", str(tmp_path / "nope.py"))
    assert missing.returncode == 2
    one_line_error(missing)


def test_generate_config(tmp_path: Path) -> None:
    printed = cli("generate-config")
    assert printed.returncode == 0
    for setting in (
        "c.TokenCache.minimum_lifetime = 300",
        "c.CachedTokenChecks.cache_ttl",
        "c.AnswerCache.namespace = 'jupyter-token-cache-answers'",
    ):
        assert f"# {setting}" in printed.stdout

    out = tmp_path / "jupyterhub_config.py"
    assert cli("generate-config", "-f", str(out)).returncode == 0
    assert out.read_text().strip() == printed.stdout.strip()
    # every line commented: the defaults check clean, once the hub has the token cache
    unused = cli("check-config", str(out))
    assert unused.returncode == 1 and "JupyterHub.authenticator_class" in unused.stdout
    with out.open("a") as f:
        f.write("from jupyter_token_cache import with_token_cache\n")
        f.write('c.JupyterHub.authenticator_class = with_token_cache("dummy")\n')
    assert cli("check-config", str(out)).returncode == 0

    out.write_text("# mine\n")
    refused = cli("generate-config", "--output", str(out))
    assert refused.returncode == 1 and "--force" in one_line_error(refused)
    assert out.read_text() == "# mine\n"
    assert cli("generate-config", "-f", str(out), "--force").returncode == 0
    assert "c.TokenCache.ttl" in out.read_text()

    settings = json.loads(cli("generate-config", "--json").stdout)
    assert settings["TokenCache"]["minimum_lifetime"]["default"] == "300"


def without_oauthenticator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub's environment without oauthenticator: its entry points are not installed."""
    from importlib.metadata import entry_points

    from jupyter_token_cache.hub import authenticator

    def installed(**select: str) -> list[EntryPoint]:
        return [e for e in entry_points(**select) if e.value.split(".")[0] != "oauthenticator"]

    monkeypatch.setattr(authenticator, "entry_points", installed)


def test_an_authenticator_that_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``with_token_cache("github")`` without oauthenticator: the problem names the package
    and what is installed, instead of "the file does not load: No module named 'github'"."""
    from jupyter_token_cache.cli.config import check_config

    without_oauthenticator(monkeypatch)
    path = tmp_path / "jupyterhub_config.py"
    path.write_text(GOOD.replace('"dummy"', '"github"'))
    (problem,) = check_config(path, ping_timeout=1)
    assert problem.setting == "JupyterHub.authenticator_class"
    assert "'github'" in problem.message and "pip install oauthenticator" in problem.message
    assert "dummy, null, pam" in problem.message  # what is installed
    # named without the mixin, as a string: the same
    path.write_text('c.JupyterHub.authenticator_class = "google"\n')
    (problem,) = check_config(path, ping_timeout=1)
    assert "pip install oauthenticator" in problem.message


def problems(tmp_path: Path, text: str) -> list[Any]:
    """check-config's findings, in this process (the command itself is tested above)."""
    from jupyter_token_cache.cli.config import check_config

    path = tmp_path / "jupyterhub_config.py"
    path.write_text(text)
    return check_config(path, ping_timeout=1)


def test_a_scope_no_user_can_hold(tmp_path: Path) -> None:
    """The quickstart granted notebooks ``access:services!service=dask`` and users only
    ``self``: every notebook's request for a dask token was refused (403), and nothing said
    so. Roles given to users or groups count; JupyterHub 6's extra_user_scopes too."""
    roles = 'c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self", "custom:dask:use"]}]\n'
    result = check(tmp_path, GOOD + roles, "--json")
    assert result.returncode == 1
    (problem,) = json.loads(result.stdout)["problems"]
    assert problem["setting"] == "TokenCache.services['dask']['scopes']"
    assert "no user can hold 'access:services!service=dask'" in problem["message"]
    assert "the 'user' role (self, custom:dask:use)" in problem["message"]
    assert "'user' role in c.JupyterHub.load_roles" in problem["fix"]

    group = (
        'c.JupyterHub.load_roles.append({"name": "dask", "groups": ["science"],'
        ' "scopes": ["access:services!service=dask"]})\n'
    )
    assert problems(tmp_path, GOOD + roles + group) == []
    # a role that names no users or groups is held by nobody
    assert len(problems(tmp_path, GOOD + roles + group.replace('"groups"', '"services"'))) == 1
    alone = GOOD.replace("c.JupyterHub.load_roles", "ignored")
    extra = 'c.JupyterHub.extra_user_scopes.update(["access:services!service=dask", "custom:dask:use"])\n'
    assert problems(tmp_path, alone + extra) == []
    # a set: .append and .extend do nothing there, for the hub as for the check
    assert len(problems(tmp_path, alone + extra.replace(".update(", ".extend("))) == 3
    # an authenticator that manages roles gives them at login: not judged
    assert problems(tmp_path, alone + "c.Authenticator.manage_roles = True\n") == []


def test_an_empty_filter_value(tmp_path: Path) -> None:
    for scope in ("read:users:name!user=", "read:users!group=", "access:services!service="):
        text = GOOD.replace('"read:users!user", "custom:dask:use"]', f'"{scope}"]', 1)
        result = check(tmp_path, text)
        assert result.returncode == 1, (scope, result.stdout)
        assert "TokenCache.notebook_scopes" in result.stdout and scope in result.stdout
        assert "  fix: " in result.stdout


def test_every_problem_comes_with_its_fix(tmp_path: Path) -> None:
    """docs/cli.md: each problem is printed with its fix (the shared-backend key had none)."""
    text = SHARED.format(url=f"redis://127.0.0.1:{free_port()}/0")
    text += 'c.JupyterHub.custom_scopes = {"nope": {}}\n'
    report = json.loads(check(tmp_path, text, "--json").stdout)
    assert report["problems"], report
    for problem in report["problems"]:
        assert problem["fix"], problem
    no_key = [p for p in report["problems"] if p["setting"] == "TokenCache.backend"]
    assert no_key and "encryption_key" in no_key[0]["fix"], report


@pytest.mark.redis
def test_a_wrong_redis_password_says_so(
    tmp_path: Path, own_redis: RedisServer, crypt_key: str
) -> None:
    own_redis.call("CONFIG", "SET", "requirepass", "the-right-one")
    for url in (f"redis://:s3cret-wrong-pw@127.0.0.1:{own_redis.port}/0", own_redis.url):
        text = SHARED.format(url=url) + f"c.TokenCache.encryption_key = {crypt_key!r}\n"
        report = json.loads(check(tmp_path, text, "--json").stdout)
        (problem,) = report["problems"]
        assert problem["setting"] == "TokenCache.url"
        assert "password" in problem["fix"] and "start it" not in problem["fix"], problem
        assert "s3cret-wrong-pw" not in json.dumps(problem) and "the-right-one" not in json.dumps(
            problem
        )
