"""The replicated mode: the token API as a JupyterHub service, ``jupyter-token-cache serve``.

Notes
-----
JupyterHub is one process with one database; in the in-hub mode every token request,
hit or miss, costs it an authentication and a lookup. This package is the second
adapter around the policy in :mod:`jupyter_token_cache.tokens` (the first is
:mod:`jupyter_token_cache.hub`): a service that any number of replicas can run behind
the proxy, answering the same routes, so that a cache hit never reaches the hub.

**The hub stays the one authority; a replica is an edge cache in front of it.** The
issue that introduced this mode sketched replicas minting with ``POST
/hub/api/users/{name}/tokens``. That route knows nothing of lineage: the cascade (a
parent's end ends what was minted from it), the check that a session is alive made
atomically with the mint, the server and login sessions behind a credential — all of
that lives in the hub's database and the hub adapter's observer. Minting over the plain
route would mean keeping lineage on Redis and running a second cascade in the service:
a second copy of a security rule, which drifts and can race the hub's. So:

- callers authenticate with :class:`~jupyter_token_cache.services.CachedHubAuth`:
  introspection answers cached on the shared backend and judged against the hub's
  event stream, so a hit asks the hub nothing;
- an answer is kept per caller credential (an HMAC of it), kind, service and requested
  scopes on the shared backend (:mod:`.edge`), sealed like every entry, with the event
  stream position from before the hub was asked;
- a hit is served when the policy's own reuse rule
  (:func:`~jupyter_token_cache.tokens.service.may_reuse`) and the revocation state both
  say so; otherwise the request goes to the hub's own route (``POST
  /hub/api/token-cache/notebook`` or ``/internal``) *with the caller's credential*:
  one hub request per miss, in which the hub applies every rule, mints, records lineage
  and cascades exactly as in the in-hub mode. Concurrent misses across replicas are one
  request (the engine's single flight, a lease on Redis);
- revocations, resets and expiries are learnt from the event stream; admin routes
  (stats, tokens, reset) are passed to the hub's, and a reset also clears this cache;
- ``introspect`` is answered from the same cached checks that judge callers; ``exchange``
  is passed to the hub as it came, since only the hub verifies an upstream token.

The rules are therefore identical by construction, and the hub tests' contract runs
against both modes (``tests/serve/test_contract.py``). The cost: a new credential costs
one introspection besides its first token request, and an entry is re-asked of the hub
after ``CachedHubAuth.cache_ttl`` (or ``disconnected_ttl``, if longer: how long a
revocation is remembered).

The client finds the API the same way in both modes: ``$JUPYTER_TOKEN_CACHE_URL``
when the hub sets it (``c.TokenCache.api_url``, the replicated mode), else
``$JUPYTERHUB_API_URL`` + ``/token-cache``.
"""
