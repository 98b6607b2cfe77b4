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
