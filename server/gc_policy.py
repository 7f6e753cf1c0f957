"""The garbage-collector policy of a server process.

Measured under polling (bench/polling.py, py-spy and ``gc.callbacks``): with CPython's
defaults the collector took about a third of the process's CPU. Each of the 30-odd requests
in flight holds a few dozen container objects across its awaits, so the young generation
reaches its threshold of 700 every few requests, what is in flight is promoted, and every few
seconds a full collection walks the ~150,000 objects the process made at start (modules,
routes, clients, settings), which live until exit.

So, once the app has started: collect, then freeze what is alive (``gc.freeze``: later
collections skip it), and collect the young generation every 5,000 net allocations instead
of 700 (request garbage is freed by reference counting long before). At shutdown both are
undone, so a process that starts apps many times (the tests) collects what they leave.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 5000


class GcPolicy:
    def __init__(self) -> None:
        self._saved: tuple[int, int, int] | None = None

    def settle(self) -> None:
        """Call once the process holds what it keeps for its lifetime."""
        gc.collect()
        gc.freeze()
        self._saved = gc.get_threshold()
        _, gen1, gen2 = self._saved
        gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)

    def restore(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None
        gc.unfreeze()
