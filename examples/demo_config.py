"""The demo hub (`./run demo`): sqlite, the memory backend, a local test user.

Everything lives in $DEMO_DIR (default .demo/); python -m jupyter_token_cache.demo sets
the ports and the demo service's token through the environment.
"""

import os
import sys

from jupyter_token_cache import with_token_cache

c = get_config()  # noqa: F821 - provided by jupyterhub
here = os.environ.get("DEMO_DIR", ".demo")

c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.DummyAuthenticator.password = os.environ.get("DEMO_PASSWORD", "demo")
c.Authenticator.allowed_users = {"demo"}
c.Authenticator.admin_users = {"demo"}
c.JupyterHub.spawner_class = "simple"  # servers run as this OS user, homes under DEMO_DIR
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(
    os.path.abspath(here), "home", "{username}"
)
c.Spawner.default_url = "/lab"
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []
c.Spawner.cmd = [os.path.join(os.path.dirname(sys.executable), "jupyterhub-singleuser")]

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ.get("DEMO_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ.get("DEMO_HUB_PORT", "8081"))
c.ConfigurableHTTPProxy.api_url = (
    f"http://127.0.0.1:{os.environ.get('DEMO_PROXY_API_PORT', '8001')}"
)
c.JupyterHub.db_url = f"sqlite:///{here}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{here}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = f"{here}/jupyterhub.pid"
c.ConfigurableHTTPProxy.pid_file = f"{here}/proxy.pid"

# A service the demo uses to create the test user's token; internal tokens are for "demo-service"
# and "whoami", the example service (examples/service/whoami.py) that checks tokens with
# CachedHubAuth: it needs the introspect and events scopes.
examples = os.path.join(os.path.dirname(os.path.abspath(__file__)))
c.JupyterHub.services = [
    {"name": "demo-admin", "api_token": os.environ["DEMO_SERVICE_TOKEN"]},
    {
        "name": "whoami",
        "url": f"http://127.0.0.1:{os.environ.get('DEMO_WHOAMI_PORT', '10101')}",
        "command": [sys.executable, os.path.join(examples, "service", "whoami.py")],
    },
]
c.JupyterHub.load_roles = [
    {"name": "demo-admin", "scopes": ["admin:users", "tokens", "custom:token-cache:admin"], "services": ["demo-admin"]},
    {"name": "whoami", "scopes": ["custom:token-cache:introspect", "custom:token-cache:events"], "services": ["whoami"]},
    # users may use the whoami service (and so get internal tokens for it)
    {"name": "user", "scopes": ["self", "access:services!service=whoami"]},
]
c.JupyterHub.custom_scopes = {
    "custom:token-cache:admin": {"description": "Token cache stats and resets"},
    "custom:token-cache:introspect": {"description": "Check tokens (RFC 7662 introspection)"},
    "custom:token-cache:events": {"description": "Follow token lifecycle events"},
}

c.TokenCache.backend = "memory"
# notebooks may call the whoami service (and ask for internal tokens for it)
c.TokenCache.notebook_scopes = ["access:servers!user", "read:users!user", "access:services!service=whoami"]
c.TokenCache.services = {
    "demo-service": {"scopes": ["read:users!user"], "lifetime": 3600},
    "whoami": {"scopes": ["access:services!service=whoami"], "lifetime": 3600},
}
