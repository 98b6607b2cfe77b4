"""Map tiles, thumbnails and TileJSON facts of a finished COG, through rio-tiler.

These run once per HTTP request, so each opens the COG afresh under ``cog_env()`` (no sidecar
scan, no PAM file written next to the COG) and reads only what it draws: a tile through
``Reader.tile`` (the overview that matches its zoom, warped to Web Mercator), a thumbnail
through ``Reader.preview`` (the overview nearest its size).

What is drawn:
- bands: one colour band is grey, or its palette (colour interpretation "palette" with a colour
  table) with the palette's own alpha; three or more are the first three colour bands as RGB.
  An alpha band is never a colour band: it is the PNG's alpha.
- values: uint8 bands are drawn as they are; any other type is stretched per band linearly
  from (percentile_2, percentile_98) of ``statistics`` (``raster_statistics()``'s dict) to
  0..255, or, without statistics for the band, from the min and max of the pixels read; a
  palette's codes are never stretched.
- transparency: nodata, NaN and infinities, the mask band and the alpha band (its partial
  values kept) make the PNG's alpha.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.dtypes import dtype_ranges
from rasterio.enums import ColorInterp
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.models import ImageData
from rio_tiler.utils import linear_rescale

from .describe import open_cog
from .footprint import wgs84_bounds
from .options import GDAL_ERRORS, RasterError, is_complex
from .statistics import UnsupportedDataType, cog_env

logger = logging.getLogger(__name__)

# Beyond this, Web Mercator tiles are smaller than a millimetre: no map asks for them.
MAX_TILE_ZOOM = 30
# zlib level of the PNGs: level 1 encoded a 256 px RGBA tile of imagery in ~5 ms against ~40 ms
# at GDAL's default 6, for ~20% more bytes; encoding was most of a warm tile's time.
PNG_ZLEVEL = 1


def tile_info(path: str | os.PathLike) -> dict[str, Any]:
    """What a TileJSON needs: bounds in WGS84, the zooms worth asking for, a centre.

    ``minzoom`` is the zoom of the coarsest overview a COG of this size has (about 256 px a
    side), ``maxzoom`` the zoom whose resolution is nearest the full resolution's; the
    centre's zoom is ``minzoom``, where the whole raster is in view.
    """
    with _reader(path, georeferenced=True) as reader:
        # The samples that are on the Earth (see footprint): rio-tiler's corners need not be.
        west, south, east, north = wgs84_bounds(reader.dataset.crs, reader.dataset.bounds)
        minzoom, maxzoom = int(reader.minzoom), int(reader.maxzoom)
    middle = west + ((east - west) % 360 or 360) / 2  # west > east: across the antimeridian
    return {
        "bounds": [west, south, east, north],
        "center": [(middle + 180) % 360 - 180, (south + north) / 2, minzoom],
        "minzoom": minzoom,
        "maxzoom": maxzoom,
    }


def thumbnail_png(
    path: str | os.PathLike, *, statistics: dict | None, max_size: int = 512
) -> bytes:
    """A PNG of the whole raster, its long side at most ``max_size``, its aspect kept."""
    if max_size < 1:
        raise ValueError("max_size must be at least 1")
    with _reader(path) as reader:
        plan = _plan(reader)
        image = reader.preview(indexes=plan.indexes, max_size=max_size)
        return _png(image, plan, statistics)


def tile_png(
    path: str | os.PathLike,
    x: int,
    y: int,
    z: int,
    *,
    statistics: dict | None,
    tilesize: int = 256,
) -> bytes | None:
    """The WebMercatorQuad tile z/x/y as a PNG of tilesize px a side (512 for @2x), or None
    when the tile does not touch the raster (or is no tile at all)."""
    if not (0 <= z <= MAX_TILE_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z):
        return None
    with _reader(path, georeferenced=True) as reader:
        plan = _plan(reader)
        try:
            image = reader.tile(x, y, z, tilesize=tilesize, indexes=plan.indexes)
        except TileOutsideBounds:  # rio-tiler asks tile_exists() first: bounds only, no read
            return None
        return _png(image, plan, statistics)


@contextlib.contextmanager
def _reader(path: str | os.PathLike, *, georeferenced: bool = False) -> Iterator[Reader]:
    path = Path(path)
    # No warnings.catch_warnings() here: it swaps the process's filters, which requests on
    # other threads share. A COG convert() wrote is georeferenced and has overviews, so
    # rasterio's and rio-tiler's warnings about those do not come.
    with cog_env(), open_cog(path) as dataset:
        if georeferenced and dataset.crs is None:
            raise RasterError("The raster has no georeferencing: it cannot be tiled.")
        if any(is_complex(d) for d in dataset.dtypes):
            raise UnsupportedDataType(
                "The raster holds complex numbers: previews need real values."
            )
        try:
            with Reader(os.fspath(path), dataset=dataset) as reader:
                yield reader
        except GDAL_ERRORS as exc:
            logger.info("cannot render %s: %s", path.name, exc)
            raise RasterError(
                "The converted file is truncated or corrupt: its pixels cannot be read."
            ) from None


@dataclass(frozen=True)
class _Plan:
    indexes: tuple[int, ...]  # the colour bands drawn: one (grey or palette) or three (RGB)
    colormap: dict | None  # the palette of a single paletted band


def _plan(reader: Reader) -> _Plan:
    dataset = reader.dataset
    colour = [
        index
        for index, interp in zip(dataset.indexes, dataset.colorinterp, strict=True)
        if interp != ColorInterp.alpha
    ]
    if not colour:
        raise RasterError("The raster has only an alpha band: there is nothing to draw.")
    if len(colour) >= 3:
        return _Plan(tuple(colour[:3]), None)
    band = colour[0]
    paletted = dataset.colorinterp[band - 1] == ColorInterp.palette
    colormap = (reader.colormap if band == 1 else _colormap(dataset, band)) if paletted else None
    return _Plan((band,), colormap or None)


def _colormap(dataset, band: int) -> dict | None:
    try:
        return dataset.colormap(band)
    except ValueError:
        return None


def _png(image: ImageData, plan: _Plan, statistics: dict | None) -> bytes:
    array = image.array
    invalid = np.ma.getmaskarray(array)
    if image.alpha_mask is not None:
        # An alpha band: rio-tiler keeps its values as the alpha mask but masks every pixel
        # short of opaque in the array, which would blacken (rescale) or hide (palette) the
        # partly transparent ones. Only alpha 0 is no data.
        invalid = np.broadcast_to(image.alpha_mask == 0, invalid.shape).copy()
    if array.dtype.kind == "f":
        # rio-tiler masks NaN only when it is the nodata value; a pixel with any band NaN or
        # infinite cannot be drawn.
        not_finite = (~np.isfinite(array.data)).any(axis=0)
        invalid |= not_finite
        array.fill_value = 0  # a NaN fill value would warn when rescaled to uint8
        if image.alpha_mask is not None:
            image.alpha_mask[not_finite] = 0
    array.mask = invalid

    if plan.colormap:
        # apply_colormap keeps the palette's alpha and drops an alpha band's: combine them.
        alpha_band = _to_byte_range(image.alpha_mask) if image.alpha_mask is not None else None
        image.alpha_mask = None  # else apply_colormap warns that it ignores it
        image = image.apply_colormap(plan.colormap)
        if alpha_band is not None:
            image.alpha_mask = np.minimum(image.alpha_mask, alpha_band)
    elif array.dtype != np.uint8:
        image.rescale(in_range=_stretch_ranges(image, plan.indexes, statistics))
    return image.render(img_format="PNG", ZLEVEL=PNG_ZLEVEL)


def _stretch_ranges(
    image: ImageData, indexes: tuple[int, ...], statistics: dict | None
) -> list[tuple[float, float]]:
    """Per band drawn, the values stretched to 0 and 255: (p2, p98) of the statistics, else
    the min and max of the valid pixels read."""
    by_band = {b["band"]: b for b in (statistics or {}).get("bands", ())}
    ranges = []
    for position, index in enumerate(indexes):
        stats = by_band.get(index) or {}
        low, high = stats.get("percentile_2"), stats.get("percentile_98")
        if low is None or high is None:
            values = image.array[position].compressed()
            low, high = (float(values.min()), float(values.max())) if values.size else (0, 1)
        elif high <= low and stats.get("min") is not None and stats["max"] > stats["min"]:
            low, high = stats["min"], stats["max"]
        if high <= low:  # constant data: anything but a division by zero
            high = low + 1
        ranges.append((float(low), float(high)))
    return ranges


def _to_byte_range(alpha: np.ndarray) -> np.ndarray:
    if alpha.dtype == np.uint8:
        return alpha
    return linear_rescale(alpha, in_range=dtype_ranges[str(alpha.dtype)]).astype(np.uint8)
