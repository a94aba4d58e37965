"""Every kind of event the hub publishes validates against the schema it registers with
jupyter_events: one that does not is not written to the audit log (hub/events.py logs an
error instead), so a new kind or reason needs its place in the schema."""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from jupyter_token_cache.hub.events import SCHEMA_PATH
from jupyter_token_cache.tokens import events
from jupyter_token_cache.tokens.events import Event

SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())

EXAMPLES = [
    Event(events.MINTED, user="alice", token_ids=("a1",), kind="notebook"),
    *(
        Event(
            events.REVOKED,
            user="alice",
            token_ids=("a1",),
            kind="api",
            reason=reason,
            created="2026-01-01T00:00:00Z",
        )
        for reason in events.REVOKE_REASONS
    ),
    *(Event(events.USER_CHANGED, user="alice", reason=r) for r in events.CHANGE_REASONS),
    Event(events.GROUP_CHANGED, group="staff", reason="renamed", previous_name="old"),
    Event(events.SERVICE_CHANGED, service="dask", reason="roles"),
    Event(events.SCOPES_CHANGED, reason="scopes"),
    Event(events.SCOPES_CHANGED, reason="unwatched"),  # hub/watch.py
    Event(events.CACHE_RESET, user="alice", extra={"revoked": 3}),
    *(Event(events.UPSTREAM_ENDED, user="alice", reason=r) for r in events.UPSTREAM_END_REASONS),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: f"{e.type}-{e.reason or ''}")
def test_every_event_validates_against_the_registered_schema(event: Event) -> None:
    jsonschema.validate({**event.model(), "id": 1, "time": 1.0}, SCHEMA)


def test_every_kind_of_event_has_an_example() -> None:
    kinds = {v for k, v in vars(events).items() if k.isupper() and isinstance(v, str)}
    stream_only = {events.RESET, events.OPEN}  # the stream's own messages, never logged
    assert kinds - stream_only == {e.type for e in EXAMPLES}
