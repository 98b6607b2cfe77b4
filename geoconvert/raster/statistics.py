"""Per-band statistics of a finished COG: exact moments in one bounded-memory pass.

``raster_statistics()`` reads the full resolution window by window (the COG's blocks grouped
into windows of at most ``window_pixels`` pixels of one band, read one band at a time), so its
memory does not grow with the raster. Each window's count, mean and sum of squared deviations
are merged with Chan et al.'s pairwise update in float64, which stays exact where a running sum
of squares would cancel catastrophically (e.g. a DEM at 8,000 m varying by centimetres).

Valid pixels are those GDAL's mask calls valid (nodata, an alpha band, an internal mask band;
``read_masks`` > 0, so an alpha of 1..255 counts) and, for floating-point data, finite. Alpha
bands get no statistics of their own. Values are the stored ones: scales and offsets are not
applied.

Histograms and percentiles:
- 8-bit data (uint8, int8): the histogram is exact, counted over the same full pass: with the
  default 256 bins one bin per value, centred on it (edges -0.5, 0.5, ..., 255.5 for uint8),
  so its counts sum to ``valid_pixels``. Min, max, mean and std come from those counts too,
  exactly, in integer arithmetic.
- Other types: the histogram is counted from a decimated read of long side ``SAMPLE_SIZE``,
  which GDAL serves from the COG's overviews, over [exact min, exact max]; its counts sum to
  the sample's valid pixels, not to ``valid_pixels``. A raster no larger than SAMPLE_SIZE is
  read whole, so its histogram is exact as well.
- ``percentile_2`` and ``percentile_98`` are read off the histogram's cumulative counts,
  interpolated linearly within the bin holding the rank (the grouped-data percentile: the
  ogive) and clamped to [min, max]: they are within one bin width of the exact value.

Complex data has no order, hence no min, max or percentiles: it raises
``UnsupportedDataType`` (a ``RasterError``) rather than guess at magnitude or phase.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from .describe import open_cog
from .options import GDAL_ERRORS, RasterError, is_complex
from .source import CancelWatch

logger = logging.getLogger(__name__)

# Pixels of one band read at once: 1 Mpx is 1-8 MB of samples and as much again of its valid
# ones, a float64 copy of those (8 MB) and 1 MB masks: tens of MB at most, whatever the size.
WINDOW_PIXELS = 1 << 20
SAMPLE_SIZE = 1024  # long side of the decimated read non-8-bit histograms are counted from
PERCENTILES = (2, 98)
_BYTE_TYPES = ("uint8", "int8")


def cog_env() -> rasterio.Env:
    """The GDAL environment for reading a COG the engine wrote: no sidecars looked for (each
    open would list the folder), none written (PAM), GDAL's block cache left at its default.

    Not ``gdal_env()``: that one bounds the block cache for one conversion; tiles, statistics
    and thumbnails share the process's cache, so a block read for one request serves the next.
    """
    return rasterio.Env(GDAL_PAM_ENABLED="NO", GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR")


class UnsupportedDataType(RasterError):
    """The raster's data type has no statistics (complex numbers)."""


def raster_statistics(
    path: str | os.PathLike,
    *,
    bins: int = 256,
    should_cancel: Callable[[], bool] | None = None,
    window_pixels: int = WINDOW_PIXELS,
) -> dict[str, Any]:
    """Statistics of every non-alpha band of the COG at ``path``, as JSON-ready plain types.

    ``{"bands": [{"band", "dtype", "valid_pixels", "min", "max", "mean", "std",
    "percentile_2", "percentile_98", "histogram": {"counts", "edges"}}, ...]}``: ``band`` is
    rasterio's 1-based index, ``std`` the population standard deviation (ddof=0); a band with
    no valid pixel has None for the numbers and a histogram of zeros.

    ``should_cancel`` is asked between windows (at most every ``CANCEL_POLL_SECONDS``, as the
    conversion asks it); when it says so, ``ConversionCancelled`` is raised.
    """
    if bins < 1:
        raise ValueError("bins must be at least 1")
    if window_pixels < 1:
        raise ValueError("window_pixels must be at least 1")
    path = Path(path)
    watch = CancelWatch(should_cancel)
    with cog_env(), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with open_cog(path) as dataset:
            try:
                return {"bands": _statistics(dataset, bins, window_pixels, watch)}
            except GDAL_ERRORS as exc:
                logger.info("raster_statistics(%s) failed reading: %s", path.name, exc)
                raise RasterError(
                    "The converted file is truncated or corrupt: its pixels cannot all be read."
                ) from None


def _statistics(dataset, bins: int, window_pixels: int, watch: CancelWatch) -> list[dict]:
    bands = [
        index
        for index, interp in zip(dataset.indexes, dataset.colorinterp, strict=True)
        if interp != ColorInterp.alpha
    ]
    if any(is_complex(dataset.dtypes[index - 1]) for index in bands):
        raise UnsupportedDataType(
            "The raster holds complex numbers: statistics and previews need real values."
        )
    dtypes = {index: np.dtype(dataset.dtypes[index - 1]) for index in bands}
    moments = {
        index: _ByteCounts(dtypes[index]) if dtypes[index].name in _BYTE_TYPES else _Moments()
        for index in bands
    }
    block_shape = dataset.block_shapes[0]
    for window in read_windows(dataset.height, dataset.width, block_shape, window_pixels):
        watch.check()
        for index in bands:
            moments[index].add(_valid(dataset, index, window=window))
    watch.check()
    return [_band_result(dataset, index, dtypes[index], moments[index], bins) for index in bands]


def read_windows(
    height: int, width: int, block_shape: tuple[int, int], max_pixels: int
) -> Iterator[Window]:
    """Windows covering height x width, each at most max_pixels, aligned to the blocks.

    Whole rows of blocks when a row of blocks fits (one strip per read, the cheapest for
    GDAL), otherwise runs of blocks along one row of blocks.
    """
    block_height, block_width = block_shape
    first_height = min(block_height, height)
    if width * first_height <= max_pixels:
        window_width = width
    else:
        window_width = _span(max_pixels // first_height, block_width, width)
    window_height = _span(max_pixels // window_width, block_height, height)
    for row in range(0, height, window_height):
        for col in range(0, width, window_width):
            yield Window(col, row, min(window_width, width - col), min(window_height, height - row))


def _span(budget: int, block: int, size: int) -> int:
    """The largest multiple of block within budget (budget itself below one block), <= size."""
    if budget >= block:
        budget -= budget % block
    return max(1, min(budget, size))


def _valid(dataset, index: int, **read_kwargs: Any) -> np.ndarray:
    """The band's valid values in a window (or a decimated read), as a flat array."""
    data = dataset.read(index, **read_kwargs)
    valid = dataset.read_masks(index, **read_kwargs) > 0
    if data.dtype.kind == "f":
        valid &= np.isfinite(data)
    return data[valid]


class _Moments:
    """Count, mean, sum of squared deviations (M2), min and max, merged window by window."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf

    def add(self, values: np.ndarray) -> None:
        n = values.size
        if n == 0:
            return
        x = values.astype(np.float64)
        mean = float(x.mean())
        self.minimum = min(self.minimum, float(x.min()))
        self.maximum = max(self.maximum, float(x.max()))
        x -= mean
        m2 = float(np.dot(x, x))
        # Chan, Golub & LeVeque's pairwise combination of (count, mean, M2).
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    def summary(self) -> tuple[int, float, float, float, float]:
        return self.count, self.minimum, self.maximum, self.mean, math.sqrt(self.m2 / self.count)


class _ByteCounts:
    """8-bit data: how often each of its 256 values occurs; everything else follows exactly."""

    def __init__(self, dtype: np.dtype) -> None:
        self.lowest = int(np.iinfo(dtype).min)
        self.counts = np.zeros(256, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        if values.size:
            codes = values.astype(np.int16) - self.lowest if self.lowest else values
            self.counts += np.bincount(codes, minlength=256)

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def summary(self) -> tuple[int, float, float, float, float]:
        count = self.count
        present = np.flatnonzero(self.counts)
        values = np.arange(256, dtype=np.int64) + self.lowest
        mean = int(np.dot(self.counts, values)) / count
        deviations = values - mean
        variance = float(np.dot(self.counts, deviations * deviations)) / count
        return (
            count,
            float(values[present[0]]),
            float(values[present[-1]]),
            mean,
            math.sqrt(variance),
        )

    def histogram(self, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact: each value counted in the one bin holding it, bins centred on the values."""
        values = np.arange(256) + self.lowest
        span = (self.lowest - 0.5, self.lowest + 255.5)
        if bins == 256:
            return self.counts.copy(), np.linspace(*span, 257)
        counts, edges = np.histogram(values, bins=bins, range=span, weights=self.counts)
        return np.rint(counts).astype(np.int64), edges


def _band_result(dataset, index: int, dtype: np.dtype, moments, bins: int) -> dict[str, Any]:
    result: dict[str, Any] = {"band": index, "dtype": dtype.name, "valid_pixels": moments.count}
    if moments.count == 0:
        return {
            **result,
            **dict.fromkeys(("min", "max", "mean", "std", "percentile_2", "percentile_98")),
            "histogram": {"counts": [0] * bins, "edges": _empty_edges(dtype, bins)},
        }
    count, minimum, maximum, mean, std = moments.summary()
    if isinstance(moments, _ByteCounts):
        counts, edges = moments.histogram(bins)
    else:
        counts, edges = _sample_histogram(_sample(dataset, index), bins, minimum, maximum)
    low, high = (_percentile(counts, edges, q, minimum, maximum) for q in PERCENTILES)
    return {
        **result,
        "min": minimum,
        "max": maximum,
        "mean": mean,
        "std": std,
        "percentile_2": low,
        "percentile_98": high,
        "histogram": {
            "counts": [int(c) for c in counts],
            "edges": [float(e) for e in edges],
        },
    }


def _sample(dataset, index: int) -> np.ndarray:
    """Valid values of a read at long side SAMPLE_SIZE: GDAL serves it from the overviews."""
    scale = min(1.0, SAMPLE_SIZE / max(dataset.height, dataset.width))
    shape = (max(1, round(dataset.height * scale)), max(1, round(dataset.width * scale)))
    return _valid(dataset, index, out_shape=shape)


def _sample_histogram(
    sample: np.ndarray, bins: int, minimum: float, maximum: float
) -> tuple[np.ndarray, np.ndarray]:
    """Counts over [minimum, maximum], in float64: in the data's float32, numpy's edges can
    collapse on a narrow range far from zero (8,000 m +- 1 cm)."""
    # Overviews resampled with ringing kernels (CUBIC) may reach past the exact range.
    sample = np.clip(sample.astype(np.float64), minimum, maximum)
    try:
        return np.histogram(sample, bins=bins, range=(minimum, maximum))
    except ValueError:  # too narrow even for float64 bins: the same edges, some repeated
        edges = np.linspace(minimum, maximum, bins + 1)
        return np.histogram(sample, bins=edges)[0], edges


def _percentile(
    counts: np.ndarray, edges: np.ndarray, q: float, minimum: float, maximum: float
) -> float:
    """The q-th percentile of a histogram, interpolated within the bin holding its rank.

    An empty histogram (valid pixels too sparse to survive the decimated read) gives the
    exact min or max: the widest range the data can have.
    """
    total = int(counts.sum())
    if total == 0:
        return minimum if q < 50 else maximum
    cumulative = np.cumsum(counts)
    rank = q / 100 * total
    i = min(int(np.searchsorted(cumulative, rank, side="left")), len(counts) - 1)
    before = cumulative[i] - counts[i]
    fraction = (rank - before) / counts[i] if counts[i] else 0.0
    value = edges[i] + fraction * (edges[i + 1] - edges[i])
    return float(min(max(value, minimum), maximum))


def _empty_edges(dtype: np.dtype, bins: int) -> list[float]:
    if dtype.name in _BYTE_TYPES:
        lowest = int(np.iinfo(dtype).min)
        return [float(e) for e in np.linspace(lowest - 0.5, lowest + 255.5, bins + 1)]
    return [float(e) for e in np.linspace(0.0, 1.0, bins + 1)]
