"""Python's garbage collector in a hub of many tokens: what the extension does about its
full collections, which run on JupyterHub's event loop like everything else.

Notes
-----
Measured in a hub process holding 100,000 tokens (benchmarks/scale.py, 2 cores): a full
collection took 220-255 ms before :func:`freeze_gc`, 10-15 ms after; during a reset with
revoke of 100,000 tokens, full collections of 28-33 ms still ran (seven in 73 s), each
inside a step of the walk, which then held the loop 45-47 ms instead of 15-20.
:func:`full_collections_deferred` keeps them out of the walks.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: The walks running now, and the thresholds to restore when the last one ends.
_deferring = 0
_thresholds: tuple[int, int, int] = gc.get_threshold()
#: A third threshold no count of young collections reaches within a walk.
_NEVER = 1 << 30


def freeze_gc() -> None:
    """Collect, then freeze what is left (``TokenCache.freeze_gc``).

    What is frozen stays until the process ends; the collection first frees the garbage
    start-up left. A reset with revoke of 50,000 tokens used to trigger three full
    collections of 220-255 ms each.
    """
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def full_collections_deferred() -> Iterator[None]:
    """While a walk runs, Python runs no full collection; young ones go on.

    The walk allocates as it goes (rows, events, cache discards) and would trigger full
    collections, each as long as the hub's heap, inside one of its steps. Deferred, the
    next full collection runs when the counts next call for it after the walk, once, with
    the loop free. Cyclic garbage that outlived two young collections waits until then:
    a walk lasts seconds to a minute. Walks may overlap; the thresholds come back when the
    last one ends.
    """
    global _deferring, _thresholds
    if _deferring == 0:
        _thresholds = gc.get_threshold()
        gc.set_threshold(_thresholds[0], _thresholds[1], _NEVER)
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if _deferring == 0:
            gc.set_threshold(*_thresholds)
