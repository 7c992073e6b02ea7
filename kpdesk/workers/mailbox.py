"""A one-slot "latest wins" mailbox between two threads (Qt-free).

The producer never blocks: ``put`` overwrites whatever the consumer has not taken yet
and counts it as dropped. The consumer blocks in ``get`` until an item arrives, the
timeout passes, or the mailbox is closed. Memory is bounded by one item.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestMailbox(Generic[T]):
    """Thread-safe single-slot mailbox with a dropped-item counter."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._has_item = False
        self._closed = False
        self._dropped = 0
        self._put = 0

    def put(self, item: T) -> bool:
        """Store ``item``, replacing an untaken one. Returns False if one was dropped."""
        with self._cond:
            dropped = self._has_item
            if dropped:
                self._dropped += 1
            self._item = item
            self._has_item = True
            self._put += 1
            self._cond.notify()
            return not dropped

    def get(self, timeout: float | None = None) -> T | None:
        """Take the newest item; None on timeout or when closed and empty."""
        with self._cond:
            if not self._has_item and not self._closed:
                self._cond.wait_for(lambda: self._has_item or self._closed, timeout)
            if not self._has_item:
                return None
            item = self._item
            self._item = None
            self._has_item = False
            return item

    def take_nowait(self) -> T | None:
        return self.get(timeout=0)

    def close(self) -> None:
        """Wake any waiting consumer; later ``get`` calls return what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped(self) -> int:
        with self._cond:
            return self._dropped

    @property
    def delivered(self) -> int:
        with self._cond:
            return self._put
