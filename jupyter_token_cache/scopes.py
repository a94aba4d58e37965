"""The custom scopes this extension defines: one place for the hub that checks them and
the services that ask for them (operators declare them in ``c.JupyterHub.custom_scopes``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: The admin routes (stats, reset) without admin:users.
ADMIN_SCOPE = "custom:token-cache:admin"
#: The event stream, for services following revocations.
EVENTS_SCOPE = "custom:token-cache:events"
#: Token introspection, for services checking tokens.
INTROSPECT_SCOPE = "custom:token-cache:introspect"
#: The user's identity-provider tokens (POST /upstream), for their servers and notebooks.
UPSTREAM_SCOPE = "custom:token-cache:upstream"


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


def held_by_users(
    load_roles: Iterable[Mapping[str, Any]], *, extra_user_scopes: Iterable[str] | None = None
) -> Callable[[str], tuple[str, str] | None]:
    """A check of whether users can hold a scope, through the roles the hub gives them.

    ``load_roles`` and ``extra_user_scopes`` are the hub's settings
    (``c.JupyterHub.load_roles``; ``c.JupyterHub.extra_user_scopes``, None on
    JupyterHub 5, which has no such setting). The check returns None for a scope that
    some user can hold at least in part, else why not and how to grant it.

    Notes
    -----
    Every user holds JupyterHub's ``user`` role: ``self`` plus ``extra_user_scopes``, or
    the scopes a ``user`` role of ``load_roles`` gives it instead; a role of
    ``load_roles`` that names users or groups is held by some. Admins' implicit
    ``admin`` role is not counted: the users whose notebooks ask for tokens are not
    admins. A token never gets a scope its user does not hold, so a notebook or service
    scope no user holds is refused (403) on every request: the quickstart once granted
    notebooks ``access:services!service=dask`` while users held only ``self``, and
    nothing said so until a notebook asked.
    """
    from jupyterhub.roles import get_default_roles

    default = next(r for r in get_default_roles() if r["name"] == "user")["scopes"]
    overridden = next((r for r in load_roles if r.get("name") == "user" and "scopes" in r), None)
    users = list(overridden["scopes"]) if overridden else [*default, *(extra_user_scopes or ())]
    others = [
        r for r in load_roles if r.get("name") != "user" and (r.get("users") or r.get("groups"))
    ]
    held = users + [scope for role in others for scope in role.get("scopes", ())]
    where = f"the 'user' role ({', '.join(users) or 'no scopes'})"
    if others:
        where += " and " + ", ".join(f"role {r.get('name')!r}" for r in others)
    else:
        where += "; no role of c.JupyterHub.load_roles names users or groups"
    if extra_user_scopes is not None and overridden is None:
        fix = "c.JupyterHub.extra_user_scopes.add({scope!r}), or a role naming the users"
    else:
        fix = (
            "add {scope!r} to the scopes of the 'user' role in c.JupyterHub.load_roles, "
            "or a role naming the users"
        )

    def check(scope: str) -> tuple[str, str] | None:
        if not _unheld(scope, held):
            return None
        why = (
            f"no user can hold {scope!r} through {where}, so no token gets it and a request "
            "naming it is refused (403)"
        )
        return why, fix.format(scope=scope)

    return check


def _unheld(scope: str, held: Iterable[str]) -> bool:
    """Whether no part of ``scope`` is within the scopes ``held``, for any one user."""
    import warnings

    from jupyterhub import orm
    from jupyterhub.scopes import _intersect_expanded_scopes, expand_scopes

    someone = orm.User(name="someone")

    def expanded(scope: str) -> frozenset[str]:
        # a server is its owner's, and a group's member holds a group's scope for herself
        # too: both read as the owner's own, so that no scope is called unheld wrongly
        try:
            return frozenset(
                expand_scopes([re.sub(r"!(server|group=[^!]*)$", "!user", scope)], owner=someone)
            )
        except Exception:  # noqa: BLE001 - an unknown scope: scope_error names it
            return frozenset()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JupyterHub's notes on filters it cannot expand
        wanted = expanded(scope)
        return bool(wanted) and not _intersect_expanded_scopes(
            wanted, frozenset().union(*map(expanded, held)), db=None
        )
