"""The revocation state's rules, without a hub: positions, records, the floor, the cut."""

from __future__ import annotations

from jupyter_token_cache.services.revocations import CLEAR, RevocationState


def answer(position: int, token_id: str = "a1", user: str = "alice", checked_at: float = 0) -> dict:  # type: ignore[type-arg]
    return {"active": True, "last_event_id": position, "token_id": token_id, "username": user,
            "checked_at": checked_at}  # fmt: skip


def live(**kwargs: object) -> RevocationState:
    state = RevocationState(**kwargs)  # type: ignore[arg-type]
    state.opened()
    return state


def test_an_event_after_the_answer_makes_it_stale_and_one_before_says_nothing() -> None:
    state = live()
    old, new = answer(10), answer(30)
    eviction = state.apply(
        {"id": 20, "type": "token-revoked", "token_ids": ["a1"], "reason": "deleted"}
    )
    assert eviction is not None and eviction.token_ids == ("a1",) and eviction.reason == "deleted"
    assert not state.usable(old) and state.verdict(old) == "ended"
    assert state.usable(new)  # a1 was reused by a token the hub described after event 20
    assert state.usable(answer(10, token_id="a2", user="bob"))


def test_user_changes_and_resets() -> None:
    state = live()
    state.apply(
        {
            "id": 5,
            "type": "user-changed",
            "user": "alicia",
            "previous_name": "alice",
            "reason": "renamed",
        }
    )
    assert not state.usable(answer(4)) and state.verdict(answer(4, user="alicia")) == "stale"
    assert state.usable(answer(4, user="bob"))
    one = state.apply({"id": 6, "type": "cache-reset", "user": "bob"})
    assert one is not None and one.users == ("bob",) and not one.everything
    assert not state.usable(answer(5, user="bob"))
    everything = state.apply({"id": 7, "type": "reset"})
    assert everything is not None and everything.everything
    assert not state.usable(answer(6, user="carol")) and state.usable(answer(7, user="carol"))
    assert state.apply({"id": 8, "type": "token-minted", "token_ids": ["a9"]}) is None
    assert state.apply({"type": "reset"}) is None  # no id: not an event of the stream
    assert state.last_event_id == "8"


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


def test_a_cut_keeps_answers_for_disconnected_ttl_or_drops_them() -> None:
    keep = live(disconnected_ttl=30)
    assert keep.cut(now=1000) and not keep.cut(now=1001)
    assert keep.usable(answer(1, checked_at=900), now=1029)
    assert not keep.usable(answer(1, checked_at=900), now=1031)
    assert keep.usable(answer(1, checked_at=1020), now=1049)  # checked at the hub during the cut
    keep.opened()
    assert keep.usable(answer(1, checked_at=900), now=5000)
    clear = live(on_disconnect=CLEAR)
    clear.cut(now=1000)
    assert not clear.usable(answer(1, checked_at=1000), now=1000)
    never = RevocationState(disconnected_ttl=30, cut_at=1000)  # before any stream
    assert never.usable(answer(1, checked_at=1000), now=1010)
    assert not never.usable(answer(1, checked_at=1000), now=1031)
