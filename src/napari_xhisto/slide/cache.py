"""A thread-safe LRU cache of decoded tiles, bounded in bytes.

The napari pyramid, ``Slide.read_region`` and ``Slide.read_scaled`` (hence inference) all read
through one cache, so a tile decoded for the screen is not decoded again for a model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np

DEFAULT_CACHE_BYTES = 256 * 2**20


class TileCache:
    """Least-recently-used store of decoded tiles with a byte budget.

    Parameters
    ----------
    max_bytes : int
        Upper bound on the summed ``nbytes`` of the cached arrays. A single array larger than the
        budget is not stored.

    Examples
    --------
    >>> cache = TileCache(max_bytes=1000)
    >>> cache.put(("s", 0, 0, 0), np.zeros((10, 10, 3), np.uint8))
    >>> cache.get(("s", 0, 0, 0)).shape
    (10, 10, 3)
    >>> cache.nbytes
    300
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """Bytes currently held."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> np.ndarray | None:
        """The cached array for ``key`` (marked as recently used), or None."""
        with self._lock:
            arr = self._items.get(key)
            if arr is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return arr

    def put(self, key: Hashable, arr: np.ndarray) -> None:
        """Store ``arr`` (made read-only, since callers share it) and evict the oldest entries."""
        size = int(arr.nbytes)
        if size > self.max_bytes:
            return
        arr.flags.writeable = False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._nbytes -= old.nbytes
            self._items[key] = arr
            self._nbytes += size
            while self._nbytes > self.max_bytes and self._items:
                _, evicted = self._items.popitem(last=False)
                self._nbytes -= evicted.nbytes

    def discard(self, predicate) -> None:
        """Drop every entry whose key satisfies ``predicate(key)`` (e.g. one slide's tiles)."""
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                self._nbytes -= self._items.pop(key).nbytes

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._items.clear()
            self._nbytes = 0
