"""Map tiles, thumbnails and TileJSON facts of a finished COG, through rio-tiler.

These run once per HTTP request under ``cog_env()`` (no sidecar scan, no PAM file written
next to the COG) and read only what they draw: a tile from the one overview its zoom needs,
warped straight to its Web Mercator grid (rio-tiler's ``read()``), a thumbnail through
``Reader.preview`` (the overview nearest its size). Tiles and TileJSON facts take an open COG
from ``DATASETS`` (geoconvert.raster.pool) when one is idle: a map asks for dozens of tiles
of one COG.

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
import math
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.dtypes import dtype_ranges
from rasterio.enums import ColorInterp
from rasterio.transform import from_bounds
from rasterio.warp import transform_bounds
from rio_tiler import reader as rio_reader
from rio_tiler.io import Reader
from rio_tiler.models import ImageData
from rio_tiler.utils import linear_rescale, normalize_bounds

from .describe import open_cog
from .footprint import wgs84_bounds
from .options import GDAL_ERRORS, RasterError, is_complex
from .pool import Pool
from .statistics import UnsupportedDataType, cog_env

logger = logging.getLogger(__name__)

# Beyond this, Web Mercator tiles are smaller than a millimetre: no map asks for them.
MAX_TILE_ZOOM = 30
# zlib level of the PNGs: level 1 encoded a 256 px RGBA tile of imagery in ~5 ms against ~40 ms
# at GDAL's default 6, for ~20% more bytes; encoding was most of a warm tile's time.
PNG_ZLEVEL = 1
# A tile reads the coarsest overview whose pixels are at most this many times its own. GDAL,
# choosing through rio-tiler's warped VRT, read the same level at 5 of the bench COG's 7 zooms
# (z15 needs 1/6.6 and reads 1/8) and one level finer at z13 and z14. 0: every tile is warped
# from the full-resolution dataset (GDAL then takes an overview through the warped VRT's own,
# built again for each tile: ~2x the time).
OVERVIEW_OVERSAMPLING = 1.25
# A tile pixel spanning more of the read dataset's pixels than this is not warped straight to
# the tile's grid, which would read them all at that resolution.
DIRECT_WARP_SPAN = 2
# Open COGs kept idle per process for the next tile (the app sets the size from its settings;
# 0 opens and closes the COG on every request).
DATASETS = Pool(max_idle=32)


def tile_info(path: str | os.PathLike, *, version: str | None = None) -> dict[str, Any]:
    """What a TileJSON needs: bounds in WGS84, the zooms worth asking for, a centre.

    ``minzoom`` is the zoom of the coarsest overview a COG of this size has (about 256 px a
    side), ``maxzoom`` the zoom whose resolution is nearest the full resolution's; the
    centre's zoom is ``minzoom``, where the whole raster is in view. ``version`` as for
    ``tile_png``.
    """
    with _pooled(path, version) as cog:
        reader = cog.reader
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
    version: str | None = None,
) -> bytes | None:
    """The WebMercatorQuad tile z/x/y as a PNG of tilesize px a side (512 for @2x), or None
    when the tile does not touch the raster (or is no tile at all).

    ``version`` names the file's content (its hash): the COG is then taken from ``DATASETS``
    by name and version. Without it, a local file is known by its size, mtime and inode; a
    remote one (``/vsis3/...``) without a version is opened for this tile alone.
    """
    if not (0 <= z <= MAX_TILE_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z):
        return None
    with _pooled(path, version) as cog:
        chosen = cog.tile_reader(x, y, z, tilesize)
        if chosen is None:
            return None
        reader, spans = chosen
        bounds, tms = reader.tms.xy_bounds(x, y, z), reader.tms
        if spans > DIRECT_WARP_SPAN:
            # Much coarser than the dataset read (no overviews, or overview reads off): only
            # rio-tiler's part() lets GDAL take an overview, through the warped VRT's own.
            image = reader.part(
                bounds,
                dst_crs=tms.rasterio_crs,
                bounds_crs=tms.rasterio_crs,
                height=tilesize,
                width=tilesize,
                max_size=None,
                indexes=cog.plan.indexes,
            )
        else:
            # Warped straight to the tile's own grid: part() warps to a grid at the dataset's
            # resolution, then resamples that to the tile (the same pixels on the bench's and
            # the tests' COGs, 2-4 ms more).
            image = rio_reader.read(
                reader.dataset,
                dst_crs=tms.rasterio_crs,
                height=tilesize,
                width=tilesize,
                indexes=cog.plan.indexes,
                vrt_options={
                    "transform": from_bounds(*bounds, tilesize, tilesize),
                    "width": tilesize,
                    "height": tilesize,
                },
            )
        return _png(image, cog.plan, statistics)


class _OpenCog:
    """A COG held open for tiles: its dataset, rio-tiler's Reader on it, its plan, and the
    overview levels opened so far. Opened under ``cog_env()``, which is left at once: a
    dataset needs no environment to be read."""

    def __init__(self, name: str):
        self.name = name
        self._levels: dict[int, Reader] = {}
        self._stack = contextlib.ExitStack()
        try:
            with cog_env():
                dataset = self._stack.enter_context(open_cog(Path(name)))
            _check(dataset, georeferenced=True)
            self.reader = self._stack.enter_context(Reader(name, dataset=dataset))
            self.plan = _plan(self.reader)
        except BaseException:
            self._stack.close()
            raise

    def tile_reader(self, x: int, y: int, z: int, tilesize: int) -> tuple[Reader, float] | None:
        """A Reader on the overview level tile z/x/y needs, opened alone (``OVERVIEW_LEVEL``),
        and how many of its pixels a tile pixel spans; None when the tile does not touch the
        raster (rio-tiler's ``tile_exists()`` test).

        Through the full-resolution dataset, GDAL warps a tile by building the warped VRT's
        own overviews first, for every tile: that doubled the read at overview zooms. The
        level is the coarsest whose pixels are at most OVERVIEW_OVERSAMPLING times the
        tile's; the full resolution's Reader when none is.
        """
        reader, dataset = self.reader, self.reader.dataset
        bounds = reader.tms.xy_bounds(x, y, z)
        if reader.tms.rasterio_crs != dataset.crs:
            bounds = transform_bounds(reader.tms.rasterio_crs, dataset.crs, *bounds, densify_pts=21)
        if not all(math.isfinite(v) for v in bounds):
            return reader, math.inf  # rio-tiler draws these; the read says what is there
        west, south, east, north = normalize_bounds(bounds)
        left, bottom, right, top = normalize_bounds(dataset.bounds)
        if not (west < right and east > left and north > bottom and south < top):
            return None
        needed = min((east - west) / dataset.res[0], (north - south) / dataset.res[1]) / tilesize
        decimations = dataset.overviews(1) if OVERVIEW_OVERSAMPLING else []
        fitting = [i for i, d in enumerate(decimations) if d <= needed * OVERVIEW_OVERSAMPLING]
        chosen = reader
        if fitting:
            if fitting[-1] not in self._levels:
                self._levels[fitting[-1]] = self._open_level(fitting[-1])
            chosen = self._levels[fitting[-1]]
        res_x, res_y = chosen.dataset.res
        return chosen, min((east - west) / res_x, (north - south) / res_y) / tilesize

    def _open_level(self, level: int) -> Reader:
        with cog_env():
            dataset = self._stack.enter_context(
                rasterio.open(self.name, driver="GTiff", OVERVIEW_LEVEL=level)
            )
        base = self.reader.dataset
        same = (
            dataset.dtypes == base.dtypes
            and dataset.nodatavals == base.nodatavals
            and dataset.colorinterp == base.colorinterp
            and dataset.mask_flag_enums == base.mask_flag_enums
            and dataset.crs == base.crs
        )
        if not same:  # not drawn the same way: the full resolution's reader, slower but right
            return self.reader
        return self._stack.enter_context(Reader(self.name, dataset=dataset))

    def close(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def _pooled(path: str | os.PathLike, version: str | None) -> Iterator[_OpenCog]:
    name = os.fspath(path)
    identity = version or _file_identity(name)
    if identity is None:
        opened = contextlib.closing(_OpenCog(name))
    else:
        opened = DATASETS.checkout(name, identity, lambda: _OpenCog(name))
    with opened as cog, _reading(Path(name)):
        yield cog


def _file_identity(name: str) -> tuple[int, int, int] | None:
    """What tells a local file from the one it replaced; None for a GDAL virtual name."""
    if name.startswith("/vsi"):
        return None
    try:
        found = os.stat(name)
    except OSError:
        return None  # the open says what is wrong
    return (found.st_size, found.st_mtime_ns, found.st_ino)


@contextlib.contextmanager
def _reader(path: str | os.PathLike, *, georeferenced: bool = False) -> Iterator[Reader]:
    path = Path(path)
    with cog_env(), open_cog(path) as dataset:
        _check(dataset, georeferenced=georeferenced)
        with Reader(os.fspath(path), dataset=dataset) as reader, _reading(path):
            yield reader


def _check(dataset, *, georeferenced: bool) -> None:
    """RasterError unless the COG can be drawn."""
    # No warnings.catch_warnings() here: it swaps the process's filters, which requests on
    # other threads share. A COG convert() wrote is georeferenced and has overviews, so
    # rasterio's and rio-tiler's warnings about those do not come.
    if georeferenced and dataset.crs is None:
        raise RasterError("The raster has no georeferencing: it cannot be tiled.")
    if any(is_complex(d) for d in dataset.dtypes):
        raise UnsupportedDataType("The raster holds complex numbers: previews need real values.")


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Reads under ``cog_env()``; GDAL's errors on the way become RasterError."""
    with cog_env():
        try:
            yield
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
    changed = image.alpha_mask is not None or array.dtype.kind == "f"
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
    if changed:  # setting a mask costs ~1 ms a tile
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
    return _encode_png(image)


def _encode_png(image: ImageData) -> bytes:
    """The image's bands and its mask as an 8-bit PNG (grey + alpha, or RGBA).

    Written here rather than through GDAL's PNG driver (``ImageData.render``): libpng tries
    every row filter on every row, which took 5-9 ms of a 256 px tile at zlib level 1; one
    "Up" filter made with numpy and zlib level 1 take ~3 ms for as many bytes (±5% on the
    bench's and the tests' rasters). Another dtype goes through GDAL as before.
    """
    mask = image.mask
    if image.array.dtype != np.uint8 or mask.dtype != np.uint8 or image.count not in (1, 3):
        return image.render(img_format="PNG", ZLEVEL=PNG_ZLEVEL)
    bands = np.concatenate([image.array.data, mask[np.newaxis]])
    count, height, width = bands.shape
    rows = np.moveaxis(bands, 0, -1).reshape(height, width * count)
    scanlines = np.empty((height, width * count + 1), np.uint8)
    scanlines[:, 0] = 2  # the "Up" filter: each byte less the one above it, modulo 256
    scanlines[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=scanlines[1:, 1:])
    colour_type = {2: 4, 4: 6}[count]  # grey + alpha, RGBA
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), PNG_ZLEVEL)),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


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
