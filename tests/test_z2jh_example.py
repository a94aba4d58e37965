"""The Zero to JupyterHub example (examples/z2jh/values.yaml), loaded as the chart loads it.

The chart's jupyterhub_config.py applies ``hub.config`` to ``c`` section by section, then
executes each ``hub.extraConfig`` entry in the order of its key; the hub pod's environment
has ``hub.extraEnv``. This test writes the same steps into a config file and loads it with
JupyterHub's own config loader, so the documented example cannot rot.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet
from jupyterhub.app import JupyterHub
from oauthenticator.github import GitHubOAuthenticator

from jupyter_token_cache import TokenCache, TokenCacheMixin
from jupyter_token_cache.cache import close_all

VALUES = Path(__file__).resolve().parents[1] / "examples" / "z2jh" / "values.yaml"

#: What the chart's jupyterhub_config.py does with hub.config and hub.extraConfig.
LOADER = """
import json

values = json.loads({values!r})
for app, cfg in values["hub"].get("config", {{}}).items():
    c[app].update(cfg)
for key, config_py in sorted(values["hub"].get("extraConfig", {{}}).items()):
    exec(config_py)
"""


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """hub.extraEnv: literal values as given; a made-up value for each Secret's key."""
    env = {}
    for name, value in yaml.safe_load(VALUES.read_text())["hub"]["extraEnv"].items():
        if isinstance(value, dict):
            ref = value["valueFrom"]["secretKeyRef"]
            value = Fernet.generate_key().decode() if ref["key"] == "crypt-key" else "s3cret"
        env[name] = value
        monkeypatch.setenv(name, value)
    return env


async def test_the_helm_example_configures_the_token_cache(
    tmp_path: Path, hub_env: dict[str, str]
) -> None:
    values = yaml.safe_load(VALUES.read_text())
    config_file = tmp_path / "jupyterhub_config.py"
    config_file.write_text(LOADER.format(values=json.dumps(values)))

    app = JupyterHub()
    app.load_config_file(str(config_file))

    authenticator = app.authenticator_class
    assert issubclass(authenticator, TokenCacheMixin)
    assert issubclass(authenticator, GitHubOAuthenticator)  # hub.config's choice, kept
    cache = TokenCache(config=app.config)
    assert cache.backend == "redis"
    assert cache.url == hub_env["TOKEN_CACHE_REDIS_URL"]
    assert cache.backend_options == {"password": "s3cret"}
    assert set(cache.services) == {"dask-gateway"}
    try:
        store = cache.store  # builds the Redis client and checks the key from JUPYTERHUB_CRYPT_KEY
        assert type(store).__name__ == "RedisStore"
    finally:
        await close_all()
