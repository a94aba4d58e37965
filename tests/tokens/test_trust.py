"""The trust rule without a hub: stream positions, the floor, records, the cut, the history."""

from __future__ import annotations

import time
from typing import Any

from jupyter_token_cache.tokens.events import Event
from jupyter_token_cache.tokens.trust import (
    CLEAR,
    ENDED,
    STALE,
    USABLE,
    EventHistory,
    RevocationState,
    position_at,
)


def answer(position: int, token_id: str = "a1", user: str = "alice", checked_at: float = 0,
           groups: list[str] | None = None, owner_kind: str = "user") -> dict[str, Any]:  # fmt: skip
    return {"active": True, "last_event_id": position, "token_id": token_id, "username": user,
            "checked_at": checked_at, "groups": groups or [], "owner_kind": owner_kind}  # fmt: skip


def live(since: int = 0, position: int = 0, **kwargs: Any) -> RevocationState:
    """A follower whose stream opened vouching for everything from ``since``."""
    state = RevocationState(**kwargs)
    state.begin(since)
    state.caught_up(position)
    return state


def test_an_event_ends_an_answer_only_if_the_answer_is_older() -> None:
    state = live()
    old, new = answer(10), answer(30)
    eviction = state.apply(
        {"id": 20, "type": "token-revoked", "token_ids": ["a1"], "reason": "deleted"}
    )
    assert eviction is not None and eviction.token_ids == ("a1",) and eviction.position == 20
    assert state.verdict(old) == ENDED
    # the late event: a1 was deleted and its id given to another token, which the hub
    # described after the event: the event says nothing about it
    assert state.verdict(new) == USABLE
    assert state.usable(answer(10, token_id="a2", user="bob"))


def test_changes_of_users_groups_and_services_make_older_answers_stale() -> None:
    state = live()
    state.apply({"id": 5, "type": "user-changed", "user": "alicia", "previous_name": "alice",
                 "reason": "renamed"})  # fmt: skip
    assert state.verdict(answer(4)) == STALE and state.verdict(answer(4, user="alicia")) == STALE
    assert state.usable(answer(4, user="bob")) and state.usable(answer(5))
    state.apply({"id": 6, "type": "group-changed", "group": "physics", "reason": "shares"})
    assert state.verdict(answer(5, user="bob", groups=["physics"])) == STALE
    assert state.usable(answer(6, user="bob", groups=["physics"]))
    assert state.usable(answer(5, user="bob", groups=["chemistry"]))
    state.apply({"id": 7, "type": "service-changed", "service": "bob", "reason": "roles"})
    assert state.verdict(answer(6, user="bob", owner_kind="service")) == STALE
    assert state.usable(answer(6, user="bob"))  # a user and a service may share a name
    one = state.apply({"id": 8, "type": "cache-reset", "user": "carol"})
    assert one is not None and one.principals == ("user:carol",) and not one.everything
    assert state.verdict(answer(7, user="carol")) == STALE


def test_resets_and_scope_changes_raise_the_floor() -> None:
    state = live()
    for n, kind in enumerate(("reset", "scopes-changed", "cache-reset"), start=1):
        eviction = state.apply({"id": 10 * n, "type": kind})
        assert eviction is not None and eviction.everything
        assert state.floor == 10 * n
        assert state.verdict(answer(10 * n - 1, user="dave")) == STALE
        assert state.usable(answer(10 * n, user="dave"))
    assert state.resets == 1
    assert state.apply({"id": 40, "type": "token-minted", "token_ids": ["a9"]}) is None
    assert state.apply({"type": "reset"}) is None  # no id: not an event of the stream
    assert state.last_event_id == "40"


def test_records_are_bounded_and_what_is_pushed_out_raises_the_floor() -> None:
    state = live(max_records=3, remember=100)
    for i in range(1, 6):
        state.apply({"id": i, "type": "token-revoked", "token_ids": [f"a{i}"]}, now=1000)
    assert state.stats()["revoked_tokens"] == 3
    assert state.floor == 2  # a1 and a2 were pushed out early
    assert not state.usable(answer(1, token_id="a9"))
    assert state.usable(answer(2, token_id="a9"))
    # records older than any cached answer can be are dropped without touching the floor
    state.apply({"id": 6, "type": "token-revoked", "token_ids": ["a6"]}, now=2000)
    assert state.stats()["revoked_tokens"] == 1 and state.floor == 2


def test_a_fresh_process_trusts_nothing_before_its_stream_opens_then_what_it_vouches_for() -> None:
    state = RevocationState()
    assert state.verdict(answer(100, checked_at=1e12)) == STALE  # checked a moment ago, still
    state.begin(50)  # the hub replays everything after 50
    assert state.verdict(answer(100, checked_at=1e12)) == STALE  # the replay is not through
    state.apply({"id": 60, "type": "token-revoked", "token_ids": ["a1"]})
    state.caught_up(70)
    assert state.connected and state.floor == 50 and state.last_event_id == "70"
    assert state.verdict(answer(49, token_id="a2")) == STALE  # older than the history
    assert state.verdict(answer(55)) == ENDED
    assert state.verdict(answer(65)) == USABLE


def test_a_resume_keeps_the_floor_unless_the_hub_lost_events() -> None:
    state = live(since=10, position=100)
    state.cut(now=1000)
    state.begin(100)  # resumed where it stood: nothing lost
    state.caught_up(120)
    assert state.floor == 10 and state.usable(answer(50))
    state.cut(now=1000)
    state.begin(500)  # the hub restarted (or its buffer moved on): history from 500 only
    state.apply({"id": 500, "type": "reset"})
    state.caught_up(510)
    assert state.floor == 500 and not state.usable(answer(499)) and state.usable(answer(500))


def test_heartbeats_move_the_position_a_quiet_stream_resumes_from() -> None:
    state = live(since=10, position=100)
    state.moved(90)
    assert state.last_event_id == "100"
    state.moved(5_000)
    assert state.last_event_id == "5000"


def test_a_cut_keeps_answers_for_disconnected_ttl_or_drops_them() -> None:
    keep = live(disconnected_ttl=30)
    assert keep.cut(now=1000) and not keep.cut(now=1001)
    assert keep.usable(answer(1, checked_at=900), now=1029)
    assert not keep.usable(answer(1, checked_at=900), now=1031)
    assert keep.usable(answer(1, checked_at=1020), now=1049)  # checked at the hub during the cut
    keep.begin(0)
    keep.caught_up(2)
    assert keep.usable(answer(1, checked_at=900), now=5000)
    clear = live(on_disconnect=CLEAR)
    clear.cut(now=1000)
    assert not clear.usable(answer(1, checked_at=1000), now=1000)


def test_without_following_an_answer_lives_disconnected_ttl_after_the_hub_gave_it() -> None:
    state = RevocationState(follows=False, disconnected_ttl=30)
    assert state.usable(answer(1, checked_at=1000), now=1029)
    assert not state.usable(answer(1, checked_at=1000), now=1031)


def test_history_ids_are_positions_above_every_answer_given() -> None:
    history = EventHistory(10, now=1000.0)
    start = history.complete_from
    assert start == position_at(1000.0)
    vouched = history.position(now=1000.0)
    first = history.append(Event("token-revoked"), now=1000.0)
    assert first.id > vouched  # same microsecond: still after the answer
    assert history.position(now=999.0) == first.id  # the clock going back moves nothing
    later = history.append(Event("token-revoked"), now=1001.0)
    assert later.id == position_at(1001.0)
    assert history.position(now=1005.0) == position_at(1005.0)  # a quiet hub still moves


def test_history_openings() -> None:
    history = EventHistory(3, now=1000.0)
    events = [history.append(Event("token-revoked"), now=1000.0 + i) for i in range(1, 5)]
    # four events in a buffer of three: the first is gone, history is complete from it
    assert history.complete_from == events[0].id
    resume = history.opening(events[1].id, now=1010.0)
    assert not resume.lost and resume.since == events[1].id
    assert [e.id for e in resume.replay] == [events[2].id, events[3].id]
    assert resume.position == position_at(1010.0)
    lost = history.opening(events[0].id - 1, now=1010.0)
    assert lost.lost and lost.since == events[0].id and len(lost.replay) == 3
    future = history.opening(position_at(2000.0), now=1010.0)
    assert future.lost and future.since == future.position and not future.replay
    fresh = history.opening(replay=7.5, now=1010.0)  # the last 7.5 s: events 3 and 4
    assert not fresh.lost and [e.id for e in fresh.replay] == [events[2].id, events[3].id]
    everything = history.opening(replay=float("inf"), now=1010.0)
    assert not everything.lost and len(everything.replay) == 3
    assert everything.since == history.complete_from
    now_on = history.opening(now=1010.0)
    assert not now_on.lost and not now_on.replay and now_on.since == now_on.position


def test_a_stream_silent_for_two_heartbeats_is_judged_as_cut() -> None:
    """A frozen hub, a stalled network, or this process frozen with events in its socket."""
    keep = RevocationState(disconnected_ttl=30)
    keep.begin(0, heartbeat=1.0)
    keep.caught_up(1)
    keep.heard(now=1000)
    assert not keep.behind(now=1002.4) and keep.usable(answer(1), now=1002.4)
    assert keep.behind(now=1002.6)
    assert keep.usable(answer(1), now=1032)  # "keep": 30 s after it fell silent (1002.5)
    assert not keep.usable(answer(1), now=1033)
    keep.heard(now=1033)  # the follower read what was waiting
    assert not keep.behind(now=1033) and keep.usable(answer(1), now=1033)
    clear = RevocationState(on_disconnect=CLEAR)
    clear.begin(0, heartbeat=1.0)
    clear.caught_up(1)
    clear.heard(now=1000)
    assert clear.usable(answer(1), now=1001) and not clear.usable(answer(1), now=1003)


async def test_a_request_waits_for_a_silent_stream_once_per_silence() -> None:
    state = RevocationState()
    state.begin(0, heartbeat=0.2)
    state.caught_up(1)
    state.heard(now=time.time() - 5)  # silent for long: behind
    started = time.monotonic()
    await state.catch_up()
    assert 0.15 < time.monotonic() - started < 1  # one heartbeat, for the follower to read
    started = time.monotonic()
    await state.catch_up()
    assert time.monotonic() - started < 0.05  # the same silence: judged at once
    state.heard()
    await state.catch_up()  # caught up: nothing to wait for


def test_an_event_naming_when_its_row_was_created_ends_that_row_only() -> None:
    """Databases give a deleted row's id to the next: the event says which row it means."""
    state = live()
    eviction = state.apply(
        {
            "id": 20,
            "type": "token-revoked",
            "token_ids": ["a1"],
            "created": "2026-12-06T10:00:00.250000Z",
        }
    )
    assert eviction is not None
    old_row = {**answer(10), "iat": 1796551200}  # 2026-12-06T10:00:00Z
    new_row = {**answer(10), "iat": 1796551260}  # the id given to a row a minute later
    assert state.verdict(old_row) == ENDED
    assert state.verdict(new_row) == USABLE  # vouched for before the event, yet another row
    assert eviction.ends("a1", 1796551200, 10) and not eviction.ends("a1", 1796551260, 10)
    assert not eviction.ends("a1", 1796551200, 20)  # vouched for after the event
    assert state.verdict(answer(10)) == ENDED  # an answer that does not say: the id decides
