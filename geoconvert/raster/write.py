"""``convert()``: one upload in, one COG out, or nothing at all.

GDAL's COG driver writes it (no full-size intermediate GeoTIFF as rio-cogeo makes): tiled,
lossless, overviews, CRS, geotransform, nodata, masks and colour table kept. A multi-band
raster's overviews are built first, each level from the one above (``overviews``), and the
driver copies them. It is written to ``.<dst name>.<uuid>.partial`` in dst's folder and
moved into place with ``os.replace`` only when complete, once rio-cogeo's validator has found
it a valid COG; on any error or cancel every partial file is removed.

Progress. ``progress(step)`` hears each ``Step`` once, in order, as it begins.
``write_progress(fraction)`` then hears how far the write (``Step.WRITE``) has got, from GDAL's
own progress callback (see ``libgdal``): fractions in (0, 1], strictly increasing, reported as
often as GDAL reports them (tens to hundreds of times: throttle in the caller). GDAL's COG
driver reports its overviews, then the final copy, on one 0..1 scale (levels built here take
the first ``OVERVIEWS_SHARE`` of it); the fraction is clamped to stay monotonic whatever a
GDAL version does. Both are called on ``convert``'s own thread, and both may raise to stop
the conversion (the exception is raised from ``convert``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import NotGeoreferencedWarning

from . import libgdal, overviews
from .describe import describe
from .options import (
    GDAL_ERRORS,
    CogOptions,
    ConversionCancelled,
    Georef,
    Limits,
    RasterError,
    RasterInfo,
    Step,
)
from .plan import creation_options, planned, temporary_file_config
from .source import CancelWatch, gdal_env, is_remote, open_source
from .validate import check_cog, check_georef, check_limits, parse_crs, sample_bytes

logger = logging.getLogger(__name__)

# The part of the write's progress given to building overviews when ``overviews`` builds
# them (the COG driver's own estimate: a third of the pixels, against four thirds to copy).
OVERVIEWS_SHARE = 0.2


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    target_crs: str | None = None,
    georef: Georef | None = None,
    options: CogOptions = CogOptions(),
    limits: Limits = Limits(),
    progress: Callable[[Step], None] | None = None,
    write_progress: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> RasterInfo:
    """Write ``src`` as a COG at ``dst`` and describe the result.

    ``progress`` hears each ``Step`` as it begins, ``write_progress`` the write's fraction
    done (see the module's docstring).

    Raises ``RasterError`` for input that cannot be converted, ``ConversionCancelled`` when
    ``should_cancel()`` returned true; in both cases dst is untouched and no partial file stays.
    """
    # A remote source (an object in a bucket, see source.is_remote) keeps its GDAL name; run
    # the call inside source.remote_env() for GDAL to reach it.
    src_path = os.fspath(src) if is_remote(src) else Path(src).absolute()
    dst_path = Path(dst).absolute()
    _check_paths(src_path, dst_path)
    dst_crs = parse_crs(target_crs, "target CRS") if target_crs is not None else None
    georef_crs = check_georef(georef) if georef is not None else None
    report = progress or (lambda step: None)
    watch = CancelWatch(should_cancel)

    partial = dst_path.with_name(f".{dst_path.name}.{uuid.uuid4().hex}.partial")
    try:
        watch.check()
        report(Step.LOAD)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with gdal_env(options, source=src_path), open_source(src_path, watch) as dataset:
                check_limits(dataset.width, dataset.height, dataset.dtypes, limits)
                watch.check()
                report(Step.ANALYZE)
                with planned(dataset, georef, georef_crs, dst_crs) as plan:
                    check_limits(plan.width, plan.height, dataset.dtypes, limits)
                    creation = creation_options(plan, options)
                    watch.check()
                    report(Step.WRITE)
                    with rasterio.Env(**temporary_file_config(plan, dataset.dtypes)):
                        _write_cog(plan.dataset, partial, creation, watch, write_progress)
            watch.check(force=True)
            check_cog(partial)
            info = describe(partial)
        os.replace(partial, dst_path)
        return _with_size(info, dst_path)
    except BaseException:
        _remove_partials(partial)
        raise


def _check_paths(src: Path | str, dst: Path) -> None:
    if isinstance(src, Path):
        if not src.is_file():
            raise FileNotFoundError(f"source is not a file: {src}")
        if dst == src or (dst.exists() and os.path.samefile(src, dst)):
            raise ValueError("dst must differ from src: the source is never overwritten")
    if dst.is_dir():
        raise IsADirectoryError(f"dst is a directory: {dst}")
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"dst's folder does not exist: {dst.parent}")


def _write_cog(
    dataset,
    partial: Path,
    creation: dict[str, Any],
    watch: CancelWatch,
    write_progress: Callable[[float], None] | None,
) -> None:
    on_progress = _progress(watch, write_progress)
    watch.arm()
    try:
        if overviews.cascades(dataset, creation):
            with overviews.with_overviews(
                dataset,
                partial,
                int(creation["BLOCKSIZE"]),
                sum(sample_bytes(dtype) for dtype in dataset.dtypes),
                lambda fraction: on_progress(OVERVIEWS_SHARE * fraction),
            ) as vrt:
                libgdal.create_copy(
                    vrt,
                    "VRT",
                    partial,
                    driver="COG",
                    options={**creation, "OVERVIEWS": "FORCE_USE_EXISTING"},
                    progress=lambda fraction: on_progress(
                        OVERVIEWS_SHARE + (1 - OVERVIEWS_SHARE) * fraction
                    ),
                )
        else:
            libgdal.create_copy(
                dataset.name,
                dataset.driver,
                partial,
                driver="COG",
                options=creation,
                progress=on_progress,
            )
    except (libgdal.GdalError, *GDAL_ERRORS) as exc:
        watch.raise_swallowed()
        if watch.cancelled:
            raise ConversionCancelled("The conversion was cancelled.") from None
        logger.info("COG write failed: %s", exc)
        raise RasterError(
            "The raster data is truncated or corrupt: its pixels could not all be read."
        ) from None
    finally:
        watch.disarm()
    watch.raise_swallowed()
    if watch.cancelled:  # GDAL may have finished reading just as the flag went up
        raise ConversionCancelled("The conversion was cancelled.")


def _progress(
    watch: CancelWatch, write_progress: Callable[[float], None] | None
) -> Callable[[float], bool]:
    """GDAL's progress: False stops the copy (cancelled, or a callback raised)."""
    written = 0.0
    owner = threading.get_ident()

    def on_progress(fraction: float) -> bool:
        nonlocal written
        if threading.get_ident() != owner:  # callbacks only ever run on convert's thread
            return not watch.stopped
        try:
            if watch.stopped or (time.monotonic() >= watch.next_ask and watch.poll()):
                return False
            fraction = min(max(fraction, 0.0), 1.0)
            if fraction > written:
                written = fraction
                if write_progress is not None:
                    write_progress(fraction)
            return True
        except BaseException as exc:  # raised through GDAL it would be lost
            watch.stop_for(exc)
            return False

    return on_progress


def _with_size(info: RasterInfo, path: Path) -> RasterInfo:
    return RasterInfo(**{**info.as_dict(), "size_bytes": path.stat().st_size})


def _remove_partials(partial: Path) -> None:
    # GDAL's COG driver keeps its overviews in "<partial>.ovr.tmp" (and warps into other
    # "<partial>.*.tmp" files); the uuid in the name makes the prefix ours alone.
    for leftover in partial.parent.glob(f"{partial.name}*"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
