"""Listeners of a run in this process: who hears of each batch (or backfill day) as it ends.

The CLI's progress bars listen here; the flows call `notify` as each item finishes. Listeners are
plain callables of this process: nothing of them goes through Prefect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Generic, TypeVar

from salesflow.manifest import BatchOutcome

Item = TypeVar("Item")


class Listeners(Generic[Item]):
    """A registry of callables, each called with every finished item while it listens."""

    def __init__(self) -> None:
        self._listening: list[Callable[[Item], None]] = []

    @contextmanager
    def listening(self, listener: Callable[[Item], None]) -> Iterator[None]:
        """Call `listener` with each item that finishes inside the block."""
        self._listening.append(listener)
        try:
            yield
        finally:
            self._listening.remove(listener)

    def notify(self, item: Item) -> None:
        for listener in list(self._listening):
            listener(item)


batch_listeners: Listeners[BatchOutcome] = Listeners()


def on_batch_finished(listener: Callable[[BatchOutcome], None]) -> AbstractContextManager[None]:
    """Call `listener` with each batch's outcome as it finishes (the CLI's progress bar)."""
    return batch_listeners.listening(listener)
