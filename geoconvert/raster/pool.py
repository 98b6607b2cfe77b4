"""A bounded per-process pool of open datasets, so map tiles skip the open between requests.

Opening a COG costs its IFD and block-offset reads (~180 small reads for the bench's COG;
each a round trip on S3), and closing it drops what GDAL's block cache holds of it. A tile
asked after another of the same COG takes an idle dataset from here instead.

A GDAL dataset is not safe to share between threads: each one is lent to one caller at a
time, and two threads drawing the same COG at once get two. The key is the name *and* the
file's identity (its content hash, or size/mtime/inode), so a replaced file is never read
through a dataset opened on the old one.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Protocol, TypeVar


class Closable(Protocol):
    def close(self) -> None: ...


T = TypeVar("T", bound=Closable)


class Pool:
    """Idle opened things by key, the least recently returned closed first beyond
    ``max_idle`` (0 keeps nothing: every checkout opens, every return closes)."""

    def __init__(self, max_idle: int):
        self.max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: OrderedDict[Hashable, list] = OrderedDict()
        self._pid = os.getpid()

    @contextlib.contextmanager
    def checkout(self, name: str, identity: Hashable, opener: Callable[[], T]) -> Iterator[T]:
        """An idle one for ``(name, identity)``, else a new one from ``opener()``; returned to
        the pool afterwards, or closed when the block raised (it may be half-read)."""
        key = (name, identity)
        thing = self._take(key)
        if thing is None:
            thing = opener()
        try:
            yield thing
        except BaseException:
            thing.close()
            raise
        self._give_back(key, thing)

    def clear(self) -> None:
        with self._lock:
            stale = [thing for things in self._idle.values() for thing in things]
            self._idle.clear()
        _close_all(stale)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(things) for things in self._idle.values())

    def _take(self, key) -> Closable | None:
        stale = []
        with self._lock:
            self._forget_if_forked()
            # Another identity under the same name is a replaced file: nobody will ask for it.
            for other in [k for k in self._idle if k[0] == key[0] and k != key]:
                stale += self._idle.pop(other)
            things = self._idle.get(key)
            thing = things.pop() if things else None
            if things == []:
                del self._idle[key]
        _close_all(stale)
        return thing

    def _give_back(self, key, thing) -> None:
        stale = []
        with self._lock:
            self._forget_if_forked()
            self._idle.setdefault(key, []).append(thing)
            self._idle.move_to_end(key)
            total = sum(len(things) for things in self._idle.values())
            while total > self.max_idle:
                oldest = next(iter(self._idle))
                stale.append(self._idle[oldest].pop(0))
                if not self._idle[oldest]:
                    del self._idle[oldest]
                total -= 1
        _close_all(stale)

    def _forget_if_forked(self) -> None:
        # A forked worker must not read through its parent's file handles: drop them unclosed.
        if self._pid != os.getpid():
            self._idle.clear()
            self._pid = os.getpid()


def _close_all(things: list) -> None:
    for thing in things:
        thing.close()
