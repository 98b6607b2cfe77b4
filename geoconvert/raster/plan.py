"""What to hand GDAL's COG driver: a georeferenced dataset, any warp, the creation options."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.transform import from_bounds
from rasterio.warp import calculate_default_transform

from .describe import crs_text
from .options import (
    FAST_LEVEL,
    GDAL_ERRORS,
    LEVELS,
    CogOptions,
    Georef,
    RasterError,
    is_complex,
)
from .validate import sample_bytes

logger = logging.getLogger(__name__)

# The largest temporary overview file the COG driver may write uncompressed (it is faster).
UNCOMPRESSED_OVERVIEWS_MAX_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class Plan:
    """What to hand the COG driver: a georeferenced dataset and, maybe, where to warp it."""

    dataset: Any
    warp_to: CRS | None
    width: int  # of the output
    height: int


@contextlib.contextmanager
def planned(
    dataset, georef: Georef | None, georef_crs: CRS | None, dst_crs: CRS | None
) -> Iterator[Plan]:
    """Georeference ``dataset`` (from its CRS, its GCPs or the request) and plan any warp."""
    gcps, gcp_crs = dataset.gcps
    if _is_georeferenced(dataset):
        if georef is not None:
            raise RasterError(
                "The file is already georeferenced: leave out crs and bounds, "
                "or remove the georeferencing from the file."
            )
        yield _plan(dataset, dst_crs)
    elif gcps and gcp_crs is not None:
        if georef is not None:
            raise RasterError(
                "The file is already georeferenced by ground control points: "
                "leave out crs and bounds."
            )
        # GDAL's warper fits a transform to the GCPs; without target_crs it stays in theirs.
        yield _plan(dataset, dst_crs or gcp_crs, gcps=(gcps, gcp_crs))
    elif georef is not None:
        with _with_georef(dataset, georef, georef_crs) as georeferenced:
            yield _plan(georeferenced, dst_crs)
    else:
        raise RasterError(
            "The file has no georeferencing (no CRS and geotransform, no ground control "
            "points): give its crs and bounds (west, south, east, north) with the upload."
        )


def _is_georeferenced(dataset) -> bool:
    return dataset.crs is not None and dataset.transform != Affine.identity()


def _plan(dataset, dst_crs: CRS | None, gcps: tuple[list, CRS] | None = None) -> Plan:
    if dst_crs is None:
        return Plan(dataset, None, dataset.width, dataset.height)
    # Size the warped output now, to hold it to the limits before anything is written.
    try:
        if gcps is not None:
            _, width, height = calculate_default_transform(
                gcps[1], dst_crs, dataset.width, dataset.height, gcps=gcps[0]
            )
        else:
            _, width, height = calculate_default_transform(
                dataset.crs, dst_crs, dataset.width, dataset.height, *dataset.bounds
            )
    except GDAL_ERRORS as exc:
        logger.info("no warp to %s: %s", dst_crs, exc)
        raise RasterError(f"The raster cannot be reprojected to {crs_text(dst_crs)}.") from None
    return Plan(dataset, dst_crs, width, height)


@contextlib.contextmanager
def _with_georef(dataset, georef: Georef, crs: CRS):
    """A VRT over ``dataset`` that carries the requested CRS and bounds; pixels untouched."""
    vrt_path = f"/vsimem/tagger-{uuid.uuid4().hex}.vrt"
    try:
        # The VRT driver's CreateCopy keeps band types, nodata, masks and the colour table;
        # its source is the opener's path, so its reads stay cancellable.
        rasterio.shutil.copy(dataset, vrt_path, driver="VRT")
        with rasterio.open(vrt_path, "r+", driver="VRT") as vrt:
            vrt.crs = crs
            vrt.transform = from_bounds(*georef.bounds, dataset.width, dataset.height)
        with rasterio.open(vrt_path, driver="VRT") as vrt:
            yield vrt
    finally:
        with contextlib.suppress(*GDAL_ERRORS):
            rasterio.shutil.delete(vrt_path, driver="VRT")


def creation_options(plan: Plan, options: CogOptions) -> dict[str, Any]:
    paletted = _is_paletted(plan.dataset)
    compression = options.compression.upper()
    predictor = (
        options.predictor
        and compression != "NONE"
        and not paletted
        and not any(is_complex(d) for d in plan.dataset.dtypes)
    )
    resampling = options.overview_resampling or ("NEAREST" if paletted else "AVERAGE")
    creation: dict[str, Any] = {
        "COMPRESS": compression,
        "PREDICTOR": "YES" if predictor else "NO",
        "BLOCKSIZE": options.blocksize,
        "OVERVIEW_RESAMPLING": resampling.upper(),
        # Regenerate overviews rather than reuse the upload's (maybe partial, maybe nearest).
        "OVERVIEWS": "IGNORE_EXISTING",
        "NUM_THREADS": str(options.num_threads).upper(),
        "BIGTIFF": "IF_SAFER",
    }
    if compression in LEVELS:
        creation["LEVEL"] = options.level if options.level is not None else FAST_LEVEL
    if plan.warp_to is not None:
        # The COG driver warps itself (into a temporary tiled file next to the output), ~3x
        # faster than reading a WarpedVRT whose overviews it would compute chunk by chunk.
        # Nodata is kept; without nodata it adds an alpha band for the area outside the
        # source (as gdalwarp -dstalpha does), which also carries a source mask or alpha.
        # Nearest for palettes (class codes must stay codes), bilinear otherwise: smooth,
        # no overshoot, cheaper than cubic.
        creation["TARGET_SRS"] = plan.warp_to.to_wkt()
        creation["WARP_RESAMPLING"] = "NEAREST" if paletted else "BILINEAR"
    return creation


def _is_paletted(dataset) -> bool:
    return dataset.count >= 1 and dataset.colorinterp[0] == ColorInterp.palette


def temporary_file_config(plan: Plan, dtypes: tuple[str, ...]) -> dict[str, str]:
    """Leave the COG driver's temporary overview file uncompressed when it is small enough.

    GDAL compresses it with ZSTD at its default level 9 and then decodes it again for the
    final copy: measured, that was half the CPU of a whole conversion (4000x4000x3 uint8:
    3.5 s with it, 1.65 s without). Uncompressed it takes a third of the raw pixel size on
    disk, so past UNCOMPRESSED_OVERVIEWS_MAX_BYTES GDAL's default stands, bounding disk use.
    """
    raw_bytes = plan.width * plan.height * (sum(sample_bytes(d) for d in dtypes) + 1)
    if raw_bytes // 3 > UNCOMPRESSED_OVERVIEWS_MAX_BYTES:
        return {}
    return {"COG_TMP_COMPRESSION": "NONE"}
