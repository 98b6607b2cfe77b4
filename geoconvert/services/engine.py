"""The raster engine as the worker runs it: its options from settings, its steps as stages.

The engine's defaults live in its dataclasses (geoconvert.raster); a GEOCONVERT_* setting
that is set overrides one of them, one that is unset leaves the engine's default.
"""

import dataclasses

from django.conf import settings

from geoconvert import raster
from geoconvert.models import Stage
from tagger import storage

STEP_STAGES = {
    raster.Step.LOAD: Stage.LOADING,
    raster.Step.ANALYZE: Stage.ANALYZING,
    raster.Step.WRITE: Stage.CREATING,
}

# settings.GEOCONVERT key -> engine field
_COG_OPTIONS = {
    "COMPRESSION": "compression",
    "LEVEL": "level",
    "PREDICTOR": "predictor",
    "BLOCKSIZE": "blocksize",
    "OVERVIEW_RESAMPLING": "overview_resampling",
    "NUM_THREADS": "num_threads",
    "CACHE_MB": "cache_mb",
}
_LIMITS = {"MAX_PIXELS": "max_pixels", "MAX_UNCOMPRESSED_BYTES": "max_uncompressed_bytes"}


def _overrides(fields: dict[str, str]) -> dict:
    conf = settings.GEOCONVERT
    return {field: conf[key] for key, field in fields.items() if conf.get(key) is not None}


def cog_options() -> raster.CogOptions:
    return raster.CogOptions(**_overrides(_COG_OPTIONS))


def raster_limits() -> raster.Limits:
    return raster.Limits(**_overrides(_LIMITS))


def georef_from_params(params: dict) -> raster.Georef | None:
    """The georeferencing a request gave for a raster without its own, if any."""
    if params.get("crs") is None and params.get("bounds") is None:
        return None
    return raster.Georef(crs=params.get("crs"), bounds=tuple(params.get("bounds") or ()))


def storage_env():
    """The GDAL environment in which the stored files' GDAL names (tagger.storage.gdal_name)
    open: on S3, /vsis3/ with the storage's own endpoint and credentials."""
    found = storage.s3_settings()
    return raster.remote_env(raster.S3Access(**dataclasses.asdict(found)) if found else None)
