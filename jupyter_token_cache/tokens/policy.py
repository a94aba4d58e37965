"""TokenCache: the one config section, storage settings plus the rules for minting tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from traitlets import Bool, Dict, Enum, Float, Integer, List, TraitError, Unicode, validate

from ..cache import CacheEngine

#: Lifetime (seconds) of internal tokens for a service whose policy names none.
DEFAULT_SERVICE_LIFETIME = 3600


def empty_filter(scope: str) -> tuple[str, str] | None:
    """What is wrong with ``scope``'s filter, and the fix, when it names an empty value.

    ``read:users:name!user=`` (or ``!group=``, ``!service=``, ``!server=``) passes
    JupyterHub's check of scope names, but every expansion of it fails ("Empty string is
    not a valid filter"): a policy holding one refuses every request (400). The hub warns
    of it at start and ``check-config`` reports it, from :meth:`TokenCache.problems`.
    """
    kind, equals, value = scope.partition("!")[2].partition("=")
    if not equals or value:
        return None
    fix = f"name the {kind} after '=' (!{kind}=NAME)"
    if kind in ("user", "server", "service"):  # JupyterHub's filters without a value
        fix += f", or drop the '=': !{kind} alone means the token's own {kind}"
    return (
        f"{scope!r} has an empty !{kind}= filter: JupyterHub refuses it whenever it expands "
        "the scope, so every request for these tokens would be refused (400)",
        fix,
    )


class Problem(NamedTuple):
    """A setting that cannot work as written: where it is, what is wrong, how to fix it."""

    setting: str
    message: str
    fix: str


class TokenCache(CacheEngine):
    """Cache settings and token policy, configured as ``c.TokenCache.*``.

    Notes
    -----
    Storage (backend, TTL, size...) and policy (scopes, lifetimes, services) share one
    section because an operator thinks of them together; in code the storage engine
    (:class:`~jupyter_token_cache.cache.CacheEngine`) knows nothing of the policy, which
    :class:`~jupyter_token_cache.tokens.service.TokenService` reads from here.
    """

    notebook_scopes = List(
        Unicode(),
        ["access:servers!user", "read:users!user"],
        config=True,
        help="""Scopes of notebook tokens. Each notebook token gets these scopes
        intersected with what its user holds (and, when asked for with a plain API
        token, with that token's scopes): a token is never wider than its user.
        "!user" filters mean the token's owner.""",
    )
    notebook_lifetime = Integer(
        86400,
        config=True,
        help="""Seconds a notebook token lives, at most; never past its parent session
        (a login cookie's or API token's expiry).""",
    )
    minimum_lifetime = Integer(
        300,
        config=True,
        help="""Seconds a served token has left, at least. A cached token is reused while
        more than half its lifetime and at least this much remain (half the policy's
        lifetime when that is shorter; when the request names a minimum_lifetime, at
        least that much). When even a fresh token could not live this long because its
        parent expires sooner, the request is refused (422).""",
    )
    services = Dict(
        config=True,
        help="""Services that may receive internal tokens: name -> {"scopes": [...],
        "lifetime": seconds}. A request for service X may ask for any subset of X's scopes
        that its caller holds; without "lifetime" tokens live 3600 seconds (never past
        their parent). Example: {"dask": {"scopes": ["access:services!service=dask"],
        "lifetime": 3600}}.""",
    )
    notebook_token_env = Unicode(
        "JUPYTERHUB_NOTEBOOK_TOKEN",
        config=True,
        help="""Environment variable that carries the notebook token into each spawned
        server (minted when the server starts). Empty: do not set one.""",
    )
    api_url = Unicode(
        "",
        config=True,
        help="""Where notebooks ask for tokens, when not at the hub: the URL of the
        replicated service (`jupyter-token-cache serve`), e.g.
        "http://proxy-public/services/token-cache/" — as spawned servers reach it. The
        hub puts it in each server's $JUPYTER_TOKEN_CACHE_URL, which the client prefers
        to $JUPYTERHUB_API_URL. Empty (default): the in-hub mode.""",
    )

    server_session_scopes = Enum(
        ["server", "user"],
        "server",
        config=True,
        help="""What a spawned server's own token ($JUPYTERHUB_API_TOKEN) may obtain.
        "server" (default): no more than the hub gave the server (its token's scopes,
        from Spawner.server_token_scopes) plus what notebook_scopes grants the server's
        notebook token. "user": anything the user holds, Gafaelfawr's "the notebook acts
        as the user" model. With "user", whoever can run code in a server (anyone it is
        shared with, under JupyterHub's server sharing) can obtain tokens with all of the
        owner's scopes.""",
    )
    event_buffer_size = Integer(
        10_000,
        config=True,
        help="""Lifecycle events the hub keeps for stream clients that reconnect with
        Last-Event-ID; a client whose last event has left the buffer gets "reset".""",
    )
    event_queue_size = Integer(
        1_000,
        config=True,
        help="""Events one stream client may fall behind by before it is disconnected
        (it resumes from the buffer): a slow consumer never slows the hub.""",
    )
    event_heartbeat = Float(
        5.0,
        config=True,
        help="""Seconds between heartbeats (SSE comments) on an idle event stream, so a
        dead connection is noticed quickly on both ends.""",
    )
    sweep_interval = Float(
        60.0,
        config=True,
        help="""Seconds between sweeps that revoke tokens whose session ended where the
        hub's database session could not see it (bulk deletes, changes made outside the
        hub). 0 disables the sweep.""",
    )
    freeze_gc = Bool(
        True,
        config=True,
        help="""Put the objects the hub holds once it is set up out of the garbage
        collector's way (gc.collect(), then gc.freeze(), as the extension starts). A hub
        holds about a million objects by then; Python's full collection walks them all
        (about 200 ms on two cores, every request waiting), and runs whenever enough new
        objects have outlived younger collections: during a revocation of many tokens, a
        burst of logins, a large listing. Frozen, they are no longer walked, and a full
        collection takes a few milliseconds. They are not freed either, and need not be:
        modules, classes, settings and the hub's own state live as long as the hub.""",
    )

    answer_horizon = Float(
        600.0,
        config=True,
        help="""Longest (seconds) a service or replica may trust an answer the hub gave it
        about a token (introspection) before asking again; followers of the event stream
        are told so. For as long, the hub watches the tokens it described, and reports
        one deleted where its database session cannot see it (raw SQL, another process)
        as revoked at the next sweep (`sweep_interval`).""",
    )
    watched_tokens = Integer(
        100_000,
        config=True,
        help="""Most tokens watched at once (see `answer_horizon`). Beyond, the oldest is
        let go, and at the next sweep one event tells every cache to ask again about
        whatever it holds.""",
    )

    def lifetime_of(self, kind: str, service: str | None = None) -> int | None:
        """The policy lifetime of ``kind`` tokens (for ``service``); None for an unknown service."""
        if kind == "notebook":
            return int(self.notebook_lifetime)
        policy = self.services.get(service or "")
        return None if policy is None else int(policy["lifetime"])

    @validate("services")
    def _check_services(self, proposal: Any) -> dict[str, dict[str, Any]]:
        services: dict[str, dict[str, Any]] = {}
        for name, policy in proposal.value.items():
            if not isinstance(name, str) or not name:
                raise TraitError(f"TokenCache.services: service names are strings, not {name!r}")
            if not isinstance(policy, dict) or set(policy) - {"scopes", "lifetime"}:
                raise TraitError(
                    f"TokenCache.services[{name!r}] must be a dict with 'scopes' and optional 'lifetime'"
                )
            scopes = policy.get("scopes")
            if (
                not scopes
                or not isinstance(scopes, list | tuple)
                or not all(isinstance(s, str) and s for s in scopes)
            ):
                raise TraitError(
                    f"TokenCache.services[{name!r}]['scopes'] must be a non-empty list of scopes"
                )
            lifetime = policy.get("lifetime", DEFAULT_SERVICE_LIFETIME)
            if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime < 1:
                raise TraitError(
                    f"TokenCache.services[{name!r}]['lifetime'] must be a positive integer"
                )
            services[name] = {"scopes": sorted(set(scopes)), "lifetime": lifetime}
        return services

    @validate(
        "event_buffer_size",
        "event_queue_size",
        "event_heartbeat",
        "answer_horizon",
        "watched_tokens",
    )
    def _check_event_settings(self, proposal: Any) -> Any:
        if proposal.value <= 0:
            raise TraitError(f"TokenCache.{proposal.trait.name} must be positive")
        return proposal.value

    @validate("notebook_lifetime", "minimum_lifetime")
    def _check_positive(self, proposal: Any) -> int:
        if proposal.value < 1:
            raise TraitError(
                f"TokenCache.{proposal.trait.name} must be a positive number of seconds"
            )
        return int(proposal.value)

    def problems(
        self,
        scope_error: Callable[[str], str | None] | None = None,
        *,
        max_lifetime: int = 0,
        unheld: Callable[[str], tuple[str, str] | None] | None = None,
    ) -> list[Problem]:
        """What in these settings is valid for each trait alone but wrong as a whole.

        ``scope_error(scope)`` says why JupyterHub would not know a scope (None when it
        does); without it, scopes are only checked for empty filter values
        (:func:`empty_filter`). ``max_lifetime`` is the hub's
        ``token_expires_in_max_seconds`` (0: no cap). ``unheld(scope)`` says why no user
        can hold a known scope, and how to grant it (None when some user can): a token
        never gets a scope its user lacks, so such a scope is refused on every request.

        Notes
        -----
        The hub logs these when it starts and ``jupyter-token-cache check-config``
        reports them, from this one list. They are not trait validators because each
        spans several settings (a service's lifetime against ``minimum_lifetime``) or
        needs the hub's scope definitions, which a validator cannot see. A policy
        lifetime shorter than ``minimum_lifetime`` does work (reuse then needs half the
        lifetime left), but the floor an operator set is silently not what happens.
        """
        found: list[Problem] = []
        cap = f" (capped by JupyterHub.token_expires_in_max_seconds = {max_lifetime})"

        def lifetime(setting: str, seconds: int, fix: str) -> None:
            capped = min(seconds, max_lifetime) if max_lifetime else seconds
            if capped < self.minimum_lifetime:
                found.append(
                    Problem(
                        setting,
                        f"tokens live {capped} s{cap if capped < seconds else ''}, less than "
                        f"TokenCache.minimum_lifetime = {self.minimum_lifetime} s: a cached "
                        f"token is reused only while half its lifetime ({capped // 2} s) remains",
                        fix,
                    )
                )

        lifetime(
            "TokenCache.notebook_lifetime",
            self.notebook_lifetime,
            "raise notebook_lifetime or lower TokenCache.minimum_lifetime",
        )
        for name, policy in self.services.items():
            lifetime(
                f"TokenCache.services[{name!r}]['lifetime']",
                policy["lifetime"],
                "raise the service's lifetime or lower TokenCache.minimum_lifetime",
            )
        named = [("TokenCache.notebook_scopes", s) for s in self.notebook_scopes]
        for name, policy in self.services.items():
            named += [(f"TokenCache.services[{name!r}]['scopes']", s) for s in policy["scopes"]]
        for setting, scope in named:
            empty = empty_filter(scope)
            if empty is not None:
                found.append(Problem(setting, *empty))
                continue
            why = scope_error(scope) if scope_error is not None else None
            if why is not None:
                found.append(
                    Problem(
                        setting,
                        why,
                        "use a JupyterHub scope (https://jupyterhub.readthedocs.io/en/stable/"
                        "rbac/scopes.html) or define custom: scopes in c.JupyterHub.custom_scopes",
                    )
                )
            elif unheld is not None and (nobody := unheld(scope)) is not None:
                found.append(Problem(setting, *nobody))
        return found
