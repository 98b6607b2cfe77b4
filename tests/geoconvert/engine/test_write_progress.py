"""Progress inside the COG write: GDAL's own progress callback, through ``write_progress``.

Plain engine, no Django (runs under ``-p no:django`` too).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoconvert.raster import ConversionCancelled, Georef, Step, convert, describe
from geoconvert.raster import source as raster_source
from tests import rasters

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


class Recorder:
    """Steps and write fractions, in the order the engine reported them."""

    def __init__(self) -> None:
        self.events: list[Step | float] = []

    def step(self, step: Step) -> None:
        self.events.append(step)

    def fraction(self, fraction: float) -> None:
        self.events.append(fraction)

    @property
    def steps(self) -> list[Step]:
        return [e for e in self.events if isinstance(e, Step)]

    @property
    def fractions(self) -> list[float]:
        return [e for e in self.events if not isinstance(e, Step)]


def plain_tiff(path: Path, size: int = 1500) -> Path:
    """A size x size grey GeoTIFF without georeferencing: a request's georef goes through a VRT."""
    data = np.random.default_rng(3).integers(0, 256, (1, size, size), dtype="uint8")
    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8", tiled=True
    ) as dst:
        dst.write(data)
    return path


def assert_write_fractions(recorder: Recorder, *, at_least: int) -> None:
    fractions = recorder.fractions
    assert recorder.steps == [Step.LOAD, Step.ANALYZE, Step.WRITE]
    assert recorder.events[:3] == recorder.steps, "fractions come after WRITE begins"
    assert len(fractions) >= at_least, fractions
    assert all(0 < f <= 1 for f in fractions)
    assert all(a < b for a, b in itertools.pairwise(fractions)), "strictly increasing"
    assert fractions[-1] == 1.0


def test_the_write_reports_increasing_fractions(tmp_path: Path):
    src = rasters.large_noise_tiff(tmp_path / "noise.tif")
    recorder = Recorder()

    info = convert(
        src, tmp_path / "cog.tif", progress=recorder.step, write_progress=recorder.fraction
    )

    assert info.overviews, "big enough for overviews: GDAL reports them, then the copy"
    assert_write_fractions(recorder, at_least=10)
    # Part of the way is the overviews, part the full-resolution copy, on one scale.
    assert any(0.05 < f < 0.5 for f in recorder.fractions)
    assert any(0.5 < f < 1 for f in recorder.fractions)


@pytest.mark.parametrize(
    ("make", "kwargs"),
    [
        (rasters.rgb_byte_tiff, {"target_crs": "EPSG:3857"}),
        (plain_tiff, {"georef": Georef(crs="EPSG:4326", bounds=(11.0, 46.0, 11.1, 46.1))}),
        (rasters.gcps_only_tiff, {}),
    ],
    ids=["reprojected", "georef-vrt", "gcps"],
)
def test_every_kind_of_write_reports_its_progress(make, kwargs, tmp_path: Path):
    recorder = Recorder()

    convert(
        make(tmp_path / "upload"),
        tmp_path / "cog.tif",
        progress=recorder.step,
        write_progress=recorder.fraction,
        **kwargs,
    )

    assert_write_fractions(recorder, at_least=2)


def test_a_cancel_seen_by_the_progress_callback_stops_the_write(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    # Reads never ask should_cancel here, so only GDAL's progress callback can notice it.
    monkeypatch.setattr(raster_source, "CANCEL_POLL_SECONDS", 0.0)
    monkeypatch.setattr(raster_source, "_monotonic", lambda: -math.inf)
    src = rasters.large_noise_tiff(tmp_path / "noise.tif")
    out = tmp_path / "cogs"
    out.mkdir()
    recorder = Recorder()
    fractions_when_asked: list[int] = []

    def should_cancel() -> bool:
        fractions_when_asked.append(len(recorder.fractions))
        return len(recorder.fractions) >= 3

    with pytest.raises(ConversionCancelled):
        convert(
            src,
            out / "cog.tif",
            progress=recorder.step,
            write_progress=recorder.fraction,
            should_cancel=should_cancel,
        )

    assert len(recorder.fractions) == 3, "nothing reported once cancelled"
    assert recorder.fractions[-1] < 1
    assert fractions_when_asked[-1] == 3
    assert list(out.iterdir()) == [], "no partial COG, no .ovr.tmp"


def test_an_error_in_write_progress_is_raised_and_leaves_dst_alone(tmp_path: Path):
    src = rasters.large_noise_tiff(tmp_path / "noise.tif")
    out = tmp_path / "cogs"
    out.mkdir()
    dst = rasters.cog(rasters.rgb_byte_tiff(tmp_path / "old.tif"), out / "cog.tif")
    before = dst.read_bytes()

    def write_progress(fraction: float) -> None:
        if fraction > 0.3:
            raise ConnectionError("database went away")

    with pytest.raises(ConnectionError, match="database went away"):
        convert(src, dst, write_progress=write_progress)

    assert dst.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["cog.tif"]
    assert describe(dst).width == 1100
