"""geoconvert.raster.pool: the open datasets kept between tiles."""

from __future__ import annotations

import threading

import pytest

from geoconvert.raster.pool import Pool


class Opened:
    def __init__(self, name: str):
        self.name = name
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_a_returned_one_is_lent_again_instead_of_opening():
    pool = Pool(max_idle=4)
    with pool.checkout("a.tif", 1, lambda: Opened("first")) as first:
        pass
    with pool.checkout("a.tif", 1, lambda: Opened("second")) as again:
        assert again is first
    assert not first.closed
    assert len(pool) == 1


def test_one_in_use_is_never_lent_to_a_second_caller():
    pool = Pool(max_idle=4)
    with (
        pool.checkout("a.tif", 1, lambda: Opened("first")) as first,
        pool.checkout("a.tif", 1, lambda: Opened("second")) as second,
    ):
        assert first is not second
    assert len(pool) == 2


def test_another_identity_under_the_same_name_is_a_replaced_file():
    pool = Pool(max_idle=4)
    with pool.checkout("a.tif", "old-hash", lambda: Opened("old")) as old:
        pass
    with pool.checkout("a.tif", "new-hash", lambda: Opened("new")) as new:
        assert new is not old
    assert old.closed, "nobody asks for the replaced file again"
    assert len(pool) == 1


def test_beyond_max_idle_the_least_recently_returned_are_closed():
    pool = Pool(max_idle=2)
    opened = {}
    for name in ("a", "b", "c"):
        with pool.checkout(name, 1, lambda name=name: Opened(name)) as thing:
            opened[name] = thing
    assert len(pool) == 2
    assert opened["a"].closed
    assert not opened["b"].closed and not opened["c"].closed


def test_max_idle_zero_keeps_nothing():
    pool = Pool(max_idle=0)
    with pool.checkout("a", 1, lambda: Opened("a")) as thing:
        pass
    assert thing.closed and len(pool) == 0


def test_one_whose_use_raised_is_closed_not_returned():
    pool = Pool(max_idle=4)
    with pytest.raises(RuntimeError), pool.checkout("a", 1, lambda: Opened("a")) as thing:
        raise RuntimeError("half-read")
    assert thing.closed and len(pool) == 0


def test_threads_each_get_their_own_and_the_pool_stays_bounded():
    pool = Pool(max_idle=3)
    in_use: set[int] = set()
    shared = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def draw():
        barrier.wait()
        for _ in range(50):
            with pool.checkout("a", 1, lambda: Opened("a")) as thing:
                with lock:
                    if id(thing) in in_use:
                        shared.append(thing)
                    in_use.add(id(thing))
                with lock:
                    in_use.discard(id(thing))

    threads = [threading.Thread(target=draw) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert shared == []
    assert len(pool) <= 3
