"""The engine's options come from settings.GEOCONVERT; its defaults are the engine's."""

import os

import pytest

from geoconvert import raster
from geoconvert.services import engine


@pytest.mark.skipif(
    any(
        name.startswith("GEOCONVERT_")
        and name not in ("GEOCONVERT_HEARTBEAT_SECONDS", "GEOCONVERT_HEARTBEAT_STALE_SECONDS")
        for name in os.environ
    ),
    reason="GEOCONVERT_* set in the environment",
)
def test_settings_defaults_are_the_engines_defaults():
    assert engine.cog_options() == raster.CogOptions()
    assert engine.raster_limits() == raster.Limits()


def test_settings_reach_the_engine(settings):
    settings.GEOCONVERT = {
        **settings.GEOCONVERT,
        "COMPRESSION": "ZSTD",
        "LEVEL": 9,
        "NUM_THREADS": "1",
        "CACHE_MB": 32,
    }
    options = engine.cog_options()
    assert (options.compression, options.level, options.cache_mb) == ("ZSTD", 9, 32)
    assert str(options.num_threads) == "1"


@pytest.mark.parametrize(
    ("cores", "processes", "threads"), [(2, 2, 1), (2, 1, 2), (8, 3, 2), (1, 4, 1), (16, 4, 4)]
)
def test_threads_are_an_equal_share_of_the_cores(cores, processes, threads):
    assert engine.threads_per_process(cores, processes) == threads


def test_a_workers_conversions_share_its_cores_unless_the_setting_says(settings, monkeypatch):
    settings.GEOCONVERT = {k: v for k, v in settings.GEOCONVERT.items() if k != "NUM_THREADS"}
    monkeypatch.setattr(engine, "available_cores", lambda: 4)
    monkeypatch.setattr(engine, "_worker_processes", None)
    assert engine.cog_options().num_threads == raster.CogOptions().num_threads  # no worker

    engine.worker_processes_set(2)
    assert engine.cog_options().num_threads == 2

    settings.GEOCONVERT = {**settings.GEOCONVERT, "NUM_THREADS": "ALL_CPUS"}
    assert engine.cog_options().num_threads == "ALL_CPUS"


def test_the_cores_are_those_this_process_may_use():
    assert 1 <= engine.available_cores() <= len(os.sched_getaffinity(0))


def test_a_real_worker_sets_its_conversions_threads_before_its_pool_forks(celery_worker):
    """The session's worker runs `-c 2`: its log says what each conversion gets."""
    threads = engine.threads_per_process(engine.available_cores(), celery_worker.concurrency)
    expected = f"Conversions write with {threads} thread(s) each"
    if os.environ.get("GEOCONVERT_NUM_THREADS"):
        expected = "Conversions write with"
    assert expected in celery_worker.log()
    assert f"{celery_worker.concurrency} worker process(es)" in celery_worker.log()
