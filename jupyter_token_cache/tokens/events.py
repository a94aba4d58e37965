"""Lifecycle events: every mint, every end of a token, every change that can make a cached answer wrong.

Pure data: what an event says, never how it travels (the hub adapter streams and logs them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Event types.
MINTED = "token-minted"
REVOKED = "token-revoked"
USER_CHANGED = "user-changed"
#: A group's roles or shares changed, or it was renamed or deleted: what its members may do.
GROUP_CHANGED = "group-changed"
#: A service's roles changed, or it was deleted.
SERVICE_CHANGED = "service-changed"
#: What any token may do may have changed in a way no list of users can name (a role's
#: scopes, a role deleted, a rename that filters like ``!user=`` or ``!group=`` follow).
SCOPES_CHANGED = "scopes-changed"
CACHE_RESET = "cache-reset"
#: A user's upstream session (their login at the identity provider, whose tokens the hub
#: hands out: POST /upstream) ended here; its tokens are dropped, the user logs in again.
UPSTREAM_ENDED = "upstream-session-ended"
#: Sent to a stream client whose history the hub no longer has: drop everything before it.
RESET = "reset"
#: Opens every stream: from which position it vouches for its history, and the hub's now.
OPEN = "open"

#: Why a token ended (token-revoked).
REVOKE_REASONS = (
    "deleted",
    "logout",
    "user-deleted",
    "server-stopped",
    "parent-revoked",
    "expired",
    "admin-reset",
)
#: Why an upstream session ended (upstream-session-ended): the provider refused its refresh
#: token (invalid_grant), the user logged out, was deleted, or an admin reset them with revoke.
UPSTREAM_END_REASONS = ("invalid-grant", "logout", "user-deleted", "admin-reset")
#: What changed about a user, group or service (user-changed, group-changed,
#: service-changed), or about scopes at large (scopes-changed).
CHANGE_REASONS = ("deleted", "renamed", "roles", "groups", "shares", "scopes")
#: Kinds of token an event may name.
TOKEN_KINDS = ("notebook", "internal", "server", "api", "oauth", "service")


@dataclass(frozen=True, slots=True)
class Event:
    """One lifecycle event, as every consumer sees it.

    Notes
    -----
    Events carry token *ids* (``a123``), never a token, its hash or its fingerprint:
    an event stream is read by services and written to audit logs, and nothing in it
    may be usable as a credential. Ids are reused by databases, so a consumer must
    treat an event as "the token it knows under this id may have ended" and look again,
    never as "the token now holding this id is gone"; ``created`` (ISO 8601) tells the
    rows apart for consumers that keep it.
    """

    type: str
    #: Monotonically increasing id, set by the broker that publishes the event.
    id: int = 0
    #: Epoch seconds.
    time: float = 0.0
    user: str | None = None
    token_ids: tuple[str, ...] = ()
    kind: str | None = None
    service: str | None = None
    #: The group a group-changed event is about.
    group: str | None = None
    reason: str | None = None
    #: For a rename: the name the user (or group) had before.
    previous_name: str | None = None
    #: token-revoked of one token: when its row was created (ISO 8601), which tells it
    #: from a row that received its id afterwards.
    created: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def model(self) -> dict[str, Any]:
        """The JSON form: on the stream, in the audit log and on Redis."""
        body: dict[str, Any] = {"id": self.id, "type": self.type, "time": self.time}
        for name in ("user", "kind", "service", "group", "reason", "previous_name", "created"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.token_ids or self.type in (MINTED, REVOKED):
            body["token_ids"] = list(self.token_ids)
        body.update(self.extra)
        return body


class EventSink(Protocol):
    """Where the policy sends events (the hub's broker; nothing, without one)."""

    def publish(self, events: Iterable[Event]) -> None:
        """Number, keep and deliver ``events``; never blocks, never raises."""


class NoEvents:
    """An event sink that drops everything (tests of the policy alone)."""

    def publish(self, events: Iterable[Event]) -> None:
        for _ in events:
            pass
