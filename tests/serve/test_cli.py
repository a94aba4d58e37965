"""``jupyter-token-cache serve`` refuses settings that cannot work, at once, in one line."""

from __future__ import annotations

from ..cli.cli import cli


def test_without_the_hub_url_and_token_it_says_which_variables_to_set() -> None:
    r = cli("serve", "--port=0")
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "jupyter-token-cache: The hub's API URL and this service's token are needed: set "
        "JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN (a managed service has them)"
    )


def test_a_shared_backend_without_a_key_stops_it_before_it_waits_for_the_hub() -> None:
    env = {"JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api", "JUPYTERHUB_API_TOKEN": "x"}
    r = cli("serve", "--TokenCache.backend=redis", env=env, timeout=20)
    assert r.returncode == 1
    assert "set c.EdgeCache.encryption_key or JUPYTERHUB_CRYPT_KEY" in r.stderr
    assert "Traceback" not in r.stderr


def test_an_unknown_option_is_a_usage_error() -> None:
    r = cli("serve", "--bogus=1")
    assert r.returncode == 2
    assert "unknown option --bogus" in r.stderr
