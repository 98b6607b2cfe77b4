"""The raster engine as the worker runs it: its options from settings, its steps as stages.

The engine's defaults live in its dataclasses (geoconvert.raster); a GEOCONVERT_* setting
that is set overrides one of them, one that is unset leaves the engine's default.
"""

import dataclasses
import logging
import os
from pathlib import Path

from django.conf import settings

from geoconvert import raster
from geoconvert.models import Stage
from tagger import storage

logger = logging.getLogger(__name__)

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


# How many processes of this worker may convert at once: set in the worker's main process
# (config.celery_app, before its pool forks), None outside a worker.
_worker_processes: int | None = None


def worker_processes_set(count: int | None) -> None:
    global _worker_processes
    _worker_processes = count if isinstance(count, int) and count >= 1 else None
    if _worker_processes is not None:
        threads = cog_options().num_threads
        logger.info(
            "Conversions write with %s thread(s) each: %d core(s), %d worker process(es)%s",
            threads,
            available_cores(),
            _worker_processes,
            " (GEOCONVERT_NUM_THREADS)" if "NUM_THREADS" in settings.GEOCONVERT else "",
        )


def cog_options() -> raster.CogOptions:
    """The engine's options from the settings. Without GEOCONVERT_NUM_THREADS, a worker's
    conversions share the cores: each of its processes converts with its part of them."""
    options = _overrides(_COG_OPTIONS)
    if "num_threads" not in options and _worker_processes is not None:
        options["num_threads"] = threads_per_process(available_cores(), _worker_processes)
    return raster.CogOptions(**options)


def threads_per_process(cores: int, processes: int) -> int:
    """The COG write's threads when ``processes`` conversions may run at once on ``cores``:
    an equal share of the cores, at least one.

    Measured with both worker processes busy on 2 cores (bench/threads.py,
    docs/performance.md), more threads than that share cost 8-9% more CPU per conversion
    and finished the pair no sooner; ALL_CPUS on a large host (16 cores, 4 processes)
    would run 64 threads on 16 cores.
    """
    return max(1, cores // max(1, processes))


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity, bounded by a cgroup v2 CPU
    quota (a container's --cpus) where there is one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


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
