"""Open file handles shared by the sources of one log file, per process.

A log file holds many sources (a bag's topics, an HDF5 file's demos x cameras); they share one
open reader per process instead of one each. At most ``capacity`` files stay open (the least
recently used one is closed): a DataLoader worker touching thousands of episodes must not run out
of file descriptors or memory. A handle opened before a fork belongs to the parent (it shares the
parent's file offset and library state); the child drops the parent's handles and opens its own.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class OpenFiles:
    """Per-process LRU of open readers keyed by path. A reader needs only a ``close()``."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._pid = os.getpid()
        self._lru: OrderedDict[str, Any] = OrderedDict()

    def get(self, path: str, opener: Callable[[str], Any]) -> Any:
        """The open reader of ``path`` in this process, opened with ``opener(path)`` if needed."""
        if self._pid != os.getpid():
            self._lru, self._pid = OrderedDict(), os.getpid()  # the parent's: not ours to use or close
        reader = self._lru.get(path)
        if reader is None:
            reader = self._lru[path] = opener(path)
        self._lru.move_to_end(path)
        while len(self._lru) > self.capacity:
            self._lru.popitem(last=False)[1].close()
        return reader

    def close(self, path: str) -> None:
        """Close ``path``'s reader if this process opened one (the next ``get`` reopens it)."""
        if self._pid != os.getpid():
            return
        reader = self._lru.pop(path, None)
        if reader is not None:
            reader.close()
