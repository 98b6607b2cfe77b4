"""raster_statistics(): exact per-band statistics of a finished COG, in bounded memory.

Engine only: plain rasterio, no Django, no database.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.io
from rasterio.transform import from_origin

from geoconvert.raster import ConversionCancelled, RasterError
from geoconvert.raster import source as raster_source
from geoconvert.raster import statistics as raster_stats
from geoconvert.raster.statistics import UnsupportedDataType, raster_statistics, read_windows
from tests import rasters

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

Validity = Callable[[rasterio.io.DatasetReader, np.ndarray, int], np.ndarray]


def everywhere(dataset, data, band):
    return np.ones(data.shape, dtype=bool)


def not_nodata(dataset, data, band):
    return data != dataset.nodata


def finite(dataset, data, band):
    return np.isfinite(data)


def alpha_not_zero(dataset, data, band):
    return dataset.read(dataset.count) > 0


def internal_mask(dataset, data, band):
    return dataset.dataset_mask() > 0


# name: (generator, which pixels of a band are valid, from the source file, the bands reported)
CASES: dict[str, tuple[Callable[[Path], Path], Validity, list[int]]] = {
    "uint8 RGB": (rasters.rgb_byte_tiff, everywhere, [1, 2, 3]),
    "uint16 multiband, nodata 0": (rasters.uint16_multiband_tiff, not_nodata, [1, 2, 3, 4]),
    "float32, nodata -9999": (rasters.float_dem_tiff, not_nodata, [1]),
    "float32 with NaN and inf": (rasters.float_nan_tiff, finite, [1]),
    "float64, NaN nodata": (rasters.float_nan_nodata_tiff, finite, [1]),
    "RGBA (alpha 0 excluded, alpha skipped)": (rasters.rgba_tiff, alpha_not_zero, [1, 2, 3]),
    "RGB with an internal mask": (rasters.masked_rgb_tiff, internal_mask, [1, 2, 3]),
    "uint16, wide": (rasters.wide_uint16_tiff, everywhere, [1, 2, 3]),
}


@pytest.fixture(scope="module")
def cogs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Each case's source and its COG, made once for the module."""
    folder = tmp_path_factory.mktemp("statistics")
    made = {}
    for number, (name, (make, _, _)) in enumerate(CASES.items()):
        src = make(folder / f"{number}.tif")
        made[name] = (src, rasters.cog(src, folder / f"{number}.cog.tif"))
    return made


def valid_values(src: Path, band: int, validity: Validity) -> np.ndarray:
    with rasterio.open(src) as dataset:
        data = dataset.read(band)
        return data[validity(dataset, data, band)].astype(np.float64)


def assert_moments(result: dict, expected: np.ndarray) -> None:
    assert result["valid_pixels"] == expected.size
    assert result["min"] == expected.min()
    assert result["max"] == expected.max()
    assert result["mean"] == pytest.approx(expected.mean(), rel=1e-9)
    assert result["std"] == pytest.approx(expected.std(ddof=0), rel=1e-9)


def bin_width(result: dict) -> float:
    return max(np.diff(result["histogram"]["edges"]))


@pytest.mark.parametrize("case", CASES)
def test_statistics_equal_numpys_over_the_full_array(case: str, cogs):
    src, cog = cogs[case]
    _, validity, bands = CASES[case]

    stats = raster_statistics(cog)

    assert [b["band"] for b in stats["bands"]] == bands
    for result in stats["bands"]:
        expected = valid_values(src, result["band"], validity)
        assert_moments(result, expected)
        with rasterio.open(src) as dataset:
            assert result["dtype"] == dataset.dtypes[result["band"] - 1]
        # Within a bin when the histogram counts every pixel (8-bit data, or a raster no
        # longer than SAMPLE_SIZE, read whole); a decimated sample may miss by a bin or two.
        with rasterio.open(src) as dataset:
            whole = dataset.dtypes[0] == "uint8" or max(dataset.shape) <= raster_stats.SAMPLE_SIZE
        width = bin_width(result) * (1 if whole else 3)
        assert abs(result["percentile_2"] - np.percentile(expected, 2)) <= width
        assert abs(result["percentile_98"] - np.percentile(expected, 98)) <= width
        assert result["min"] <= result["percentile_2"] <= result["percentile_98"] <= result["max"]
        histogram = result["histogram"]
        assert len(histogram["counts"]) == 256 and len(histogram["edges"]) == 257
    json.dumps(stats, allow_nan=False)


@pytest.mark.parametrize("case", ["uint8 RGB", "RGBA (alpha 0 excluded, alpha skipped)"])
def test_byte_histograms_are_exact_one_bin_per_value(case: str, cogs):
    src, cog = cogs[case]
    _, validity, _ = CASES[case]

    for result in raster_statistics(cog)["bands"]:
        expected = valid_values(src, result["band"], validity).astype(np.int64)
        histogram = result["histogram"]
        assert sum(histogram["counts"]) == result["valid_pixels"]
        assert histogram["counts"] == np.bincount(expected, minlength=256).tolist()
        assert histogram["edges"] == [v - 0.5 for v in range(257)]


def test_byte_histograms_with_fewer_bins_still_count_every_valid_pixel(cogs):
    _, cog = cogs["RGBA (alpha 0 excluded, alpha skipped)"]

    for result in raster_statistics(cog, bins=64)["bands"]:
        assert len(result["histogram"]["counts"]) == 64
        assert len(result["histogram"]["edges"]) == 65
        assert sum(result["histogram"]["counts"]) == result["valid_pixels"]


def test_int8_histograms_are_exact_over_the_signed_range(tmp_path: Path):
    data = np.random.default_rng(41).integers(-128, 128, (1, 300, 400), dtype="int8")
    data[0, :20] = -1  # nodata
    src = tmp_path / "signed.tif"
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        with rasterio.open(
            src,
            "w",
            driver="GTiff",
            width=400,
            height=300,
            count=1,
            dtype="int8",
            nodata=-1,
            crs="EPSG:4326",
            transform=from_origin(0, 1, 0.01, 0.01),
        ) as dst:
            dst.write(data)
    expected = data[data != -1].astype(np.int64)

    (result,) = raster_statistics(rasters.cog(src, tmp_path / "signed.cog.tif"))["bands"]

    assert result["dtype"] == "int8"
    assert_moments(result, expected.astype(np.float64))
    assert result["histogram"]["edges"] == [v - 0.5 for v in range(-128, 129)]
    assert result["histogram"]["counts"] == np.bincount(expected + 128, minlength=256).tolist()


def test_other_histograms_span_the_exact_range(cogs):
    _, cog = cogs["uint16 multiband, nodata 0"]

    for result in raster_statistics(cog, bins=100)["bands"]:
        edges = result["histogram"]["edges"]
        assert (edges[0], edges[-1]) == (result["min"], result["max"])
        assert len(result["histogram"]["counts"]) == 100
        # 300x200 is read whole for the histogram: it counts every valid pixel
        assert sum(result["histogram"]["counts"]) == result["valid_pixels"]


def test_many_small_windows_merge_to_the_same_exact_statistics(cogs):
    src, cog = cogs["uint16, wide"]
    windows = list(read_windows(450, 1800, (256, 256), 256 * 256))
    assert len(windows) > 10

    merged = raster_statistics(cog, window_pixels=256 * 256)

    whole = raster_statistics(cog, window_pixels=1800 * 450)
    for result, one_window in zip(merged["bands"], whole["bands"], strict=True):
        assert_moments(result, valid_values(src, result["band"], everywhere))
        assert result == {**one_window, "mean": result["mean"], "std": result["std"]}


def test_float_merge_is_stable_far_from_zero(tmp_path: Path):
    """A naive sum of squares loses every digit of a centimetre-scale spread at 8,000 m."""
    rng = np.random.default_rng(40)
    data = (8000.0 + rng.normal(0, 0.01, (1, 700, 900))).astype("float32")
    src = tmp_path / "high.tif"
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        with rasterio.open(
            src,
            "w",
            driver="GTiff",
            width=900,
            height=700,
            count=1,
            dtype="float32",
            crs="EPSG:32633",
            transform=from_origin(500_000, 5_000_000, 1, 1),
        ) as dst:
            dst.write(data)
    cog = rasters.cog(src, tmp_path / "high.cog.tif")

    (result,) = raster_statistics(cog, window_pixels=128 * 128)["bands"]

    assert_moments(result, data[0].astype(np.float64).ravel())


def test_a_range_too_narrow_for_the_bins_still_has_a_histogram(tmp_path: Path):
    values = 8000.0 + np.spacing(8000.0) * np.arange(4.0)  # four neighbouring float64s
    data = np.resize(values, (1, 40, 50))
    src = tmp_path / "narrow.tif"
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        with rasterio.open(
            src,
            "w",
            driver="GTiff",
            width=50,
            height=40,
            count=1,
            dtype="float64",
            crs="EPSG:4326",
            transform=from_origin(0, 1, 0.01, 0.01),
        ) as dst:
            dst.write(data)

    (result,) = raster_statistics(src)["bands"]

    assert (result["min"], result["max"]) == (values[0], values[-1])
    assert len(result["histogram"]["edges"]) == 257
    assert sum(result["histogram"]["counts"]) == 2000
    assert values[0] <= result["percentile_2"] <= result["percentile_98"] <= values[-1]


def test_reads_stay_within_the_window_bound(monkeypatch: pytest.MonkeyPatch, cogs):
    _, cog = cogs["uint16, wide"]
    bound = 256 * 256
    window_reads: list[int] = []
    sample_reads: list[int] = []

    def recording(method):
        def read(self, *args, **kwargs):
            out = method(self, *args, **kwargs)
            assert out.ndim == 2, "one band at a time"
            (window_reads if "window" in kwargs else sample_reads).append(out.size)
            return out

        return read

    monkeypatch.setattr(
        rasterio.io.DatasetReader, "read", recording(rasterio.io.DatasetReader.read)
    )
    monkeypatch.setattr(
        rasterio.io.DatasetReader, "read_masks", recording(rasterio.io.DatasetReader.read_masks)
    )

    raster_statistics(cog, window_pixels=bound)

    assert sum(window_reads) == 2 * 3 * 1800 * 450, "every pixel of 3 bands and masks, once"
    assert max(window_reads) <= bound
    assert max(sample_reads) <= raster_stats.SAMPLE_SIZE**2


@pytest.mark.parametrize(
    "shape, block, bound",
    [
        ((450, 1800), (256, 256), 256 * 256),  # runs of blocks along a row of blocks
        ((1000, 700), (256, 256), 1 << 20),  # the whole raster
        ((1000, 700), (256, 256), 700 * 600),  # strips of whole rows of blocks
        ((300, 5000), (512, 512), 100_000),  # a bound smaller than one block
        ((7, 3), (1, 3), 1),
    ],
)
def test_read_windows_tile_the_raster_within_the_bound(shape, block, bound):
    height, width = shape
    covered = np.zeros(shape, dtype=np.int64)

    for window in read_windows(height, width, block, bound):
        assert window.width * window.height <= bound
        covered[window.toslices()] += 1

    assert (covered == 1).all()


def test_statistics_read_the_full_resolution_never_the_overviews(tmp_path: Path):
    cog = rasters.cog(rasters.overview_trap_tiff(tmp_path / "trap.tif"), tmp_path / "c.tif")

    (result,) = raster_statistics(cog)["bands"]

    assert (result["min"], result["max"], result["mean"], result["std"]) == (50, 50, 50, 0)
    assert result["valid_pixels"] == 1024 * 1024


def test_a_band_without_valid_pixels_has_no_numbers(tmp_path: Path):
    src = tmp_path / "empty.tif"
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        with rasterio.open(
            src,
            "w",
            driver="GTiff",
            width=64,
            height=48,
            count=2,
            dtype="float32",
            nodata=-1,
            crs="EPSG:4326",
            transform=from_origin(0, 1, 0.01, 0.01),
        ) as dst:
            dst.write(np.stack([np.full((48, 64), -1.0), np.full((48, 64), 3.0)]))

    empty, constant = raster_statistics(src, bins=16)["bands"]

    assert empty["valid_pixels"] == 0
    for key in ("min", "max", "mean", "std", "percentile_2", "percentile_98"):
        assert empty[key] is None
    assert empty["histogram"]["counts"] == [0] * 16
    assert len(empty["histogram"]["edges"]) == 17
    assert constant["valid_pixels"] == 64 * 48
    assert (constant["min"], constant["max"], constant["std"]) == (3.0, 3.0, 0.0)
    assert constant["percentile_2"] == constant["percentile_98"] == 3.0


@pytest.mark.parametrize("gdal_type", ["CInt16", "CFloat32"])
def test_complex_data_is_refused_with_a_message(gdal_type: str, tmp_path: Path):
    # CInt16 has no numpy type: it must be refused as complex, not fail on its name.
    src = rasters.complex_tiff(tmp_path / "complex.tif", gdal_type)

    with pytest.raises(UnsupportedDataType, match="complex numbers") as raised:
        raster_statistics(src)
    assert isinstance(raised.value, RasterError)


def test_cancelled_before_the_first_window(monkeypatch: pytest.MonkeyPatch, cogs):
    _, cog = cogs["uint16, wide"]
    reads: list[int] = []
    original = rasterio.io.DatasetReader.read
    monkeypatch.setattr(
        rasterio.io.DatasetReader,
        "read",
        lambda self, *a, **k: reads.append(1) or original(self, *a, **k),
    )

    with pytest.raises(ConversionCancelled):
        raster_statistics(cog, should_cancel=lambda: True)
    assert reads == []


def test_cancelled_between_windows(monkeypatch: pytest.MonkeyPatch, cogs):
    _, cog = cogs["uint16, wide"]
    monkeypatch.setattr(raster_source, "CANCEL_POLL_SECONDS", 0.0)
    asked: list[int] = []

    def should_cancel() -> bool:
        asked.append(1)
        return len(asked) >= 3

    with pytest.raises(ConversionCancelled):
        raster_statistics(cog, window_pixels=256 * 256, should_cancel=should_cancel)
    assert len(asked) == 3, "asked before each window, stopped at the third"


def test_unreadable_files_raise_raster_errors(tmp_path: Path):
    with pytest.raises(RasterError, match="cannot be read"):
        raster_statistics(rasters.text_file(tmp_path / "notes.tif"))
    with pytest.raises(RasterError, match="cannot be read"):
        raster_statistics(tmp_path / "missing.tif")
    with pytest.raises(RasterError, match="truncated or corrupt"):
        raster_statistics(rasters.truncated_tiff(tmp_path / "cut.tif"))
