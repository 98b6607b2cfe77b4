"""What a request asks for and how large a raster is, checked before any pixel is read."""

from __future__ import annotations

import logging
import math
import os

import numpy
from rasterio.crs import CRS
from rasterio.errors import CRSError

from .footprint import wgs84_bounds
from .options import GDAL_ERRORS, Georef, Limits, RasterError
from .source import gdal_env

logger = logging.getLogger(__name__)


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


_LATITUDE_TOLERANCE = 1e-6


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
    if crs.is_geographic and not (
        -90 - _LATITUDE_TOLERANCE <= south and north <= 90 + _LATITUDE_TOLERANCE
    ):
        raise RasterError(
            "The bounds are not on the globe: in a geographic CRS latitudes (south, north) "
            "lie between -90 and 90."
        )
    wgs84_bounds(crs, bounds)  # raises if they are entirely off the globe
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
    size = pixels * sum(sample_bytes(d) for d in dtypes)
    if size > limits.max_uncompressed_bytes:
        raise RasterError(
            f"The raster holds {_human_bytes(size)} of pixel data uncompressed "
            f"({width:,} x {height:,} pixels x {len(dtypes)} bands); "
            f"tagger converts at most {_human_bytes(limits.max_uncompressed_bytes)}."
        )


def check_cog(path: str | os.PathLike) -> None:
    """RasterError unless the file ``convert()`` wrote at ``path`` is a valid COG, as
    rio-cogeo's validator (GDAL's validate_cloud_optimized_geotiff, on rasterio) judges."""
    # Imported here: rio-cogeo brings morecantile and pydantic, a quarter of a second that
    # every process importing the engine would pay at start-up, converting or not.
    from rio_cogeo.cogeo import cog_validate

    try:
        with gdal_env():
            valid, errors, _ = cog_validate(os.fspath(path), quiet=True)
    except GDAL_ERRORS as exc:
        logger.info("COG validation could not read %s: %s", path, exc)
        valid, errors = False, ["it cannot be read back"]
    if not valid:
        logger.warning("the COG written for %s is not valid: %s", path, errors)
        raise RasterError(
            "The converted file is not a valid Cloud-Optimized GeoTIFF, so it was not kept ("
            + "; ".join(errors)
            + "). The file is not at fault: report this with the file attached."
        )


# Band types GDAL has and numpy has not: complex_int16 (CInt16, two int16 per sample) is read
# as complex64.
_GDAL_ONLY_SAMPLE_BYTES = {"complex_int16": 4}


def sample_bytes(dtype: str) -> int:
    """Bytes of one sample of a band of rasterio type ``dtype`` as GDAL stores it."""
    if dtype in _GDAL_ONLY_SAMPLE_BYTES:
        return _GDAL_ONLY_SAMPLE_BYTES[dtype]
    try:
        return numpy.dtype(dtype).itemsize
    except TypeError:
        raise RasterError(f"The raster's band type {dtype!r} is not one tagger converts.") from None


def _human_bytes(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
