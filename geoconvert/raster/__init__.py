"""The conversion engine: one uploaded raster file in, one Cloud-Optimized GeoTIFF out.

Plain rasterio, no Django: the service calls ``convert()`` and maps ``Step``s, the write's
progress fractions, ``RasterError`` and ``ConversionCancelled`` onto its models; the engine
can be run, tested and benchmarked alone.

Safety: an upload is hostile until proven otherwise. Its first bytes must name a self-contained
format (``ALLOWED_DRIVERS``) and GDAL opens it with that one driver only, reading through an
opener that serves exactly that file, read-only; PAM, sidecars and the network are fenced off
(``gdal_env()``; a source in an S3 bucket is read by its ``/vsis3/`` name inside
``remote_env()``, and GDAL may reach that one object); size limits are checked from the
header before any pixel is read; the text of a ``RasterError`` is ours, GDAL's own (which
names server paths) is only logged.

Modules: ``options`` (options, limits, steps, result, errors: the defaults live there),
``source`` (the boundary for the untrusted file: identify, open, read, cancel), ``validate``
(request and size checks), ``plan`` (georeferencing, warp, creation options), ``write``
(``convert()``, through a partial file), ``overviews`` (a multi-band raster's overviews, each
level from the one above), ``libgdal`` (``GDALCreateCopy`` and ``GDALTranslate`` with GDAL's
progress callback, through ctypes on rasterio's libgdal), ``describe`` (a finished COG's
metadata); reading a finished COG: ``statistics`` (exact per-band statistics, histogram,
percentiles) and ``render`` (map tiles, thumbnails, TileJSON facts, through rio-tiler).
"""

from .describe import describe
from .options import (
    CogOptions,
    ConversionCancelled,
    Georef,
    Limits,
    RasterError,
    RasterInfo,
    Step,
    is_complex,
)
from .source import ALLOWED_DRIVERS, S3Access, gdal_env, remote_env
from .validate import check_request
from .write import convert

__all__ = [
    "check_request",
    "ALLOWED_DRIVERS",
    "CogOptions",
    "ConversionCancelled",
    "Georef",
    "Limits",
    "RasterError",
    "RasterInfo",
    "S3Access",
    "Step",
    "convert",
    "describe",
    "is_complex",
    "gdal_env",
    "remote_env",
]
