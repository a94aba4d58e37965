"""The custom scopes this extension defines: one place for the hub that checks them and
the services that ask for them (operators declare them in ``c.JupyterHub.custom_scopes``)."""

from __future__ import annotations

#: The admin routes (stats, reset) without admin:users.
ADMIN_SCOPE = "custom:token-cache:admin"
#: The event stream, for services following revocations.
EVENTS_SCOPE = "custom:token-cache:events"
#: Token introspection, for services checking tokens.
INTROSPECT_SCOPE = "custom:token-cache:introspect"


def scope_error(scope: str) -> str | None:
    """Why JupyterHub does not know ``scope`` (its name or its filter), or None if it does.

    JupyterHub's own check, so filters read as the hub reads them ("!user",
    "!service=x", ...). Custom scopes count once defined: the hub defines
    ``c.JupyterHub.custom_scopes`` before the token cache starts, and
    ``jupyter-token-cache check-config`` defines them from the file it checks.
    """
    from jupyterhub.scopes import _check_scopes_exist

    try:
        _check_scopes_exist([scope])
    except KeyError as e:  # ScopeNotFound
        return " ".join(str(e.args[0] if e.args else e).split())
    return None
