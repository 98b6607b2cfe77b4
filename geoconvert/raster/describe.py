"""The metadata of a finished COG, in a shape that survives JSON."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import rasterio
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning

from .footprint import wgs84_bounds
from .options import GDAL_ERRORS, RasterError, RasterInfo
from .source import gdal_env

logger = logging.getLogger(__name__)


def crs_text(crs: CRS) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg is not None else crs.to_wkt()


@contextlib.contextmanager
def open_cog(path: Path) -> Iterator[rasterio.io.DatasetReader]:
    """A finished COG (one ``convert()`` wrote), opened as a GeoTIFF only; RasterError when it
    cannot be. The caller chooses the GDAL environment."""
    try:
        dataset = rasterio.open(path, driver="GTiff")
    except GDAL_ERRORS as exc:
        logger.info("cannot open %s: %s", path.name, exc)
        raise RasterError("The converted file cannot be read back.") from None
    with dataset:
        yield dataset


def describe(path: str | os.PathLike) -> RasterInfo:
    """Metadata of an existing COG (one ``convert()`` wrote)."""
    path = Path(path)
    with gdal_env(), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with open_cog(path) as dataset:
            return _describe_dataset(dataset, path)


def _describe_dataset(dataset, path: Path) -> RasterInfo:
    corners = [
        dataset.transform @ xy
        for xy in ((0, 0), (dataset.width, 0), (0, dataset.height), (dataset.width, dataset.height))
    ]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    bounds = (min(xs), min(ys), max(xs), max(ys))
    if dataset.crs is not None:
        crs = crs_text(dataset.crs)
        bounds_wgs84 = wgs84_bounds(dataset.crs, bounds)
    else:
        crs, bounds_wgs84 = None, []
    return RasterInfo(
        crs=crs,
        bounds=[float(v) for v in bounds],
        bounds_wgs84=[float(v) for v in bounds_wgs84],
        width=dataset.width,
        height=dataset.height,
        count=dataset.count,
        dtypes=list(dataset.dtypes),
        nodata=_json_number(dataset.nodata),
        resolution=[float(v) for v in dataset.res],
        overviews=[int(f) for f in dataset.overviews(1)],
        compression=dataset.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION"),
        size_bytes=path.stat().st_size,
    )


def _json_number(value: float | None) -> float | str | None:
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)
