"""What a request asks for and how large a raster is, checked before any pixel is read."""

from __future__ import annotations

import math

import numpy
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds

from .options import GDAL_ERRORS, Georef, Limits, RasterError


def parse_crs(text: str, what: str) -> CRS:
    if not isinstance(text, str) or not text.strip() or len(text) > 20_000:
        raise RasterError(f"The {what} must be a CRS such as 'EPSG:4326'.")
    try:
        crs = CRS.from_user_input(text.strip())
    except (CRSError, ValueError):
        shown = text.strip()[:80]
        raise RasterError(
            f"The {what} {shown!r} is not a coordinate reference system GDAL knows."
        ) from None
    if not (crs.is_geographic or crs.is_projected):
        raise RasterError(f"The {what} must be a geographic or projected CRS.")
    return crs


def wgs84_bounds(crs: CRS, bounds: tuple[float, float, float, float]) -> list[float]:
    """``bounds`` in EPSG:4326, edges densified; RasterError if they are off the globe."""
    try:
        west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    except GDAL_ERRORS:
        west = south = east = north = math.nan
    tolerance = 1e-6
    if not all(math.isfinite(v) for v in (west, south, east, north)) or not (
        -90 - tolerance <= south <= north <= 90 + tolerance
    ):
        raise RasterError(
            "The raster's bounds are not on the globe in its CRS: check the CRS and bounds "
            "(west, south, east, north)."
        )
    return [west, max(south, -90.0), east, min(north, 90.0)]


def check_georef(georef: Georef) -> CRS:
    crs = parse_crs(georef.crs, "CRS")
    bounds = georef.bounds
    if (
        len(bounds) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds)
        or not all(math.isfinite(v) for v in bounds)
    ):
        raise RasterError("The bounds must be four numbers: west, south, east, north.")
    west, south, east, north = bounds
    if not (west < east and south < north):
        raise RasterError(
            "The bounds must be west, south, east, north with west < east and south < north."
        )
    wgs84_bounds(crs, bounds)  # raises if they are off the globe
    return crs


def check_request(*, target_crs: str | None = None, georef: Georef | None = None) -> None:
    """Validate what a request asks for, without touching any file: RasterError if wrong."""
    if target_crs is not None:
        parse_crs(target_crs, "target CRS")
    if georef is not None:
        check_georef(georef)


def check_limits(width: int, height: int, dtypes: tuple[str, ...], limits: Limits) -> None:
    pixels = width * height
    if pixels > limits.max_pixels:
        raise RasterError(
            f"The raster is {width:,} x {height:,} pixels ({pixels:,} pixels); "
            f"tagger converts at most {limits.max_pixels:,} pixels."
        )
    sample_bytes = sum(numpy.dtype(d).itemsize for d in dtypes)
    size = pixels * sample_bytes
    if size > limits.max_uncompressed_bytes:
        raise RasterError(
            f"The raster holds {_human_bytes(size)} of pixel data uncompressed "
            f"({width:,} x {height:,} pixels x {len(dtypes)} bands); "
            f"tagger converts at most {_human_bytes(limits.max_uncompressed_bytes)}."
        )


def _human_bytes(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
