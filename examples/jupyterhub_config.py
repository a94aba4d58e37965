"""An operator's jupyterhub_config.py with the token cache (copy what you need).

Notebooks get a notebook token in $JUPYTERHUB_NOTEBOOK_TOKEN and can ask for more:
    POST /hub/api/token-cache/notebook   {"minimum_lifetime": 600}
    POST /hub/api/token-cache/internal   {"service": "dask", "scopes": [...]}
or, in Python, jupyter_token_cache.client.get_internal_token("dask").
"""

from jupyter_token_cache import with_token_cache

c = get_config()  # noqa: F821 - provided by jupyterhub

# Any authenticator: an entry-point name ("github", "generic-oauth", "pam"...), an
# import path or a class. Or: class MyAuthenticator(TokenCacheMixin, MyBase): ...
c.JupyterHub.authenticator_class = with_token_cache("github")

# Storage. Redis lets several hub processes (and hub restarts) share the cache; entries
# are sealed with JUPYTERHUB_CRYPT_KEY (or c.TokenCache.encryption_key).
c.TokenCache.backend = "redis"
c.TokenCache.url = "redis://127.0.0.1:6379/0"
c.TokenCache.namespace = "hub-prod"  # several hubs can share one server

# Policy. Every setting adds to what is there, so this file composes with others.
c.TokenCache.notebook_lifetime = 86400
c.TokenCache.minimum_lifetime = 300
c.TokenCache.services.update(
    {
        "dask": {"scopes": ["access:services!service=dask"], "lifetime": 3600},
    }
)
# Notebooks may ask for dask tokens: users must hold the scope, as tokens never get more
# than their user (JupyterHub 6; on 5, a "user" role of load_roles with "self" and it).
c.TokenCache.notebook_scopes.append("access:services!service=dask")
c.JupyterHub.extra_user_scopes.add("access:services!service=dask")

# Admin routes (GET /hub/api/token-cache/stats, DELETE /hub/api/token-cache[/users/x])
# need admin:users or this custom scope; here it goes to a non-admin operator.
c.JupyterHub.custom_scopes.update(
    {
        "custom:token-cache:admin": {"description": "See token cache stats and reset it"},
    }
)
c.JupyterHub.load_roles.append(
    {"name": "token-cache-operator", "scopes": ["custom:token-cache:admin"], "users": ["ops"]},
)
