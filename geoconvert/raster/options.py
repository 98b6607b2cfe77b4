"""What a conversion is asked and what it answers: options, limits, steps, result, errors.

The engine's defaults live here only, as the dataclasses' defaults.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any

from rasterio._err import CPLE_BaseError  # what rasterio.shutil.copy raises; no public alias
from rasterio.errors import RasterioError

LOSSLESS_COMPRESSIONS = ("DEFLATE", "ZSTD", "LZW", "NONE")
LEVELS = {"DEFLATE": range(1, 13), "ZSTD": range(1, 23)}
FAST_LEVEL = 1  # for DEFLATE and ZSTD alike, when CogOptions.level is None
_OVERVIEW_RESAMPLINGS = (
    "NEAREST",
    "AVERAGE",
    "BILINEAR",
    "CUBIC",
    "CUBICSPLINE",
    "LANCZOS",
    "MODE",
    "RMS",
    "GAUSS",
)

GDAL_ERRORS = (RasterioError, CPLE_BaseError)
# rasterio raises SystemError("Unknown GDAL Error") when GDAL fails without saying why, as
# its PNG driver does on a truncated file.
COPY_ERRORS = (*GDAL_ERRORS, SystemError)


def is_complex(dtype: str) -> bool:
    """Whether rasterio's band type ``dtype`` holds complex numbers: complex_int16 (GDAL's
    CInt16, which numpy has not), complex64 (CInt32 and CFloat32 read so) or complex128."""
    return dtype.startswith("complex")


class RasterError(Exception):
    """The input cannot be converted. ``str(exc)`` tells a person what to do about it."""


class ConversionCancelled(Exception):
    """``should_cancel()`` said so; nothing was left behind."""


class Step(enum.Enum):
    """Reported through ``progress`` when each begins, once each, in this order."""

    LOAD = "load"
    ANALYZE = "analyze"
    WRITE = "write"


@dataclass(frozen=True)
class CogOptions:
    """How the COG is written. Defaults aim at lossless output any GeoTIFF reader opens, fast.

    DEFLATE rather than ZSTD: every GeoTIFF reader (libtiff, GDAL of any age, QGIS, ArcGIS,
    geotiff.js) decodes DEFLATE, while ZSTD needs GDAL >= 2.3 built with it. Level 1 with a
    predictor was measured at ~0.4x the time of ``rio cogeo create`` and ~35% smaller files;
    higher levels cost much more time for a few percent. ZSTD level 1 is faster still
    (~0.33x) for deployments whose clients all read it.
    """

    compression: str = "DEFLATE"
    level: int | None = None  # None: 1, the fast level (see above); ignored by LZW and NONE
    predictor: bool = True  # PREDICTOR=YES: 2 for integers, 3 for floats; never on palettes
    blocksize: int = 512
    # None: NEAREST for paletted rasters (an average of class codes is a wrong class),
    # AVERAGE otherwise: it anti-aliases, ignores nodata, and unlike CUBIC (GDAL's COG default)
    # never rings past the data's range at edges, which matters for DEMs and nodata borders.
    overview_resampling: str | None = None
    num_threads: int | str = "ALL_CPUS"  # threads compressing tiles and computing overviews
    cache_mb: int = 64  # GDAL_CACHEMAX for the conversion: bounds its memory

    def __post_init__(self) -> None:
        if self.compression.upper() not in LOSSLESS_COMPRESSIONS:
            raise ValueError(
                f"compression must be one of {LOSSLESS_COMPRESSIONS}, not {self.compression!r}"
            )
        levels = LEVELS.get(self.compression.upper())
        if self.level is not None and levels is not None and self.level not in levels:
            raise ValueError(
                f"{self.compression} level must be in {levels.start}..{levels.stop - 1}"
            )
        if not (64 <= self.blocksize <= 4096 and self.blocksize % 16 == 0):
            raise ValueError("blocksize must be a multiple of 16 between 64 and 4096")
        if (
            self.overview_resampling
            and self.overview_resampling.upper() not in _OVERVIEW_RESAMPLINGS
        ):
            raise ValueError(f"overview_resampling must be one of {_OVERVIEW_RESAMPLINGS}")
        threads = str(self.num_threads).upper()
        if threads != "ALL_CPUS" and not (threads.isdigit() and int(threads) >= 1):
            raise ValueError("num_threads must be a positive int or 'ALL_CPUS'")
        if self.cache_mb < 16:
            raise ValueError("cache_mb must be at least 16")


@dataclass(frozen=True)
class Limits:
    """Refuse rasters larger than this, judged from the header before any pixel is read."""

    max_pixels: int = 1_000_000_000  # width * height
    max_uncompressed_bytes: int = 16 * 1024**3  # width * height * sum of bytes per band sample


@dataclass(frozen=True)
class Georef:
    """Where a raster without georeferencing lies, as the user gave it."""

    crs: str
    bounds: tuple[float, float, float, float]  # west, south, east, north in crs


@dataclass(frozen=True)
class RasterInfo:
    """Metadata of a finished COG; ``as_dict()`` survives ``json.dumps(allow_nan=False)``."""

    crs: str | None  # "EPSG:xxxx" when it has an EPSG code, else WKT
    bounds: list[float]  # west, south, east, north in crs
    bounds_wgs84: list[float]  # same in EPSG:4326, edges densified
    width: int
    height: int
    count: int
    dtypes: list[str]
    nodata: float | str | None  # NaN and infinities as "nan", "inf", "-inf", as gdalinfo -json does
    resolution: list[float]
    overviews: list[int]  # decimation factors of band 1
    compression: str | None
    size_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
