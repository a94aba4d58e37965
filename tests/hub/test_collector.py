"""The walks keep Python's full collections out of their steps (jupyter_token_cache.hub.collector)."""

from __future__ import annotations

import gc

from jupyter_token_cache.hub.collector import full_collections_deferred


def test_full_collections_wait_for_the_last_walk_young_ones_go_on() -> None:
    before = gc.get_threshold()
    with full_collections_deferred():
        deferred = gc.get_threshold()
        assert deferred[:2] == before[:2]  # young collections as before
        assert deferred[2] > 1_000_000  # no count of young collections reaches it
        with full_collections_deferred():  # walks overlap
            assert gc.get_threshold() == deferred
        assert gc.get_threshold() == deferred  # one walk still runs
    assert gc.get_threshold() == before


def test_a_walk_that_fails_gives_the_thresholds_back() -> None:
    before = gc.get_threshold()
    try:
        with full_collections_deferred():
            raise RuntimeError("the database went away")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
