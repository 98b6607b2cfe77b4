"""Deterministic, realistic benchmark inputs: smooth terrain-like content plus texture.

Content is a sum of plane waves with a 1/f amplitude spectrum (hills and valleys at every
scale, as in terrain and imagery) plus per-pixel sensor noise. A plane wave
sin(fx*x + fy*y + p) = sin(fx*x)cos(fy*y + p) + cos(fx*x)sin(fy*y + p) is separable, so a whole
block of rows is one small matrix product: a 14142^2 x 3 input is written in about half a
minute with ~100 MB of memory. Same seed, same bytes.

Inputs are written as a user would upload them: an uncompressed, striped GeoTIFF (GDAL's
default layout), georeferenced in UTM.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

ROWS_PER_BLOCK = 512
WAVES = 48
DEM_NODATA = -9999.0


def _waves(rng: np.random.Generator, size: int, *, lowest: float, highest: float):
    """Random plane waves between the given periods (pixels) with amplitude ~ period."""
    periods = np.exp(rng.uniform(np.log(lowest), np.log(highest), WAVES))
    angles = rng.uniform(0, np.pi, WAVES)
    freq = 2 * np.pi / periods
    fx, fy = freq * np.cos(angles), freq * np.sin(angles)
    phase = rng.uniform(0, 2 * np.pi, WAVES)
    amplitude = periods / np.sqrt((periods**2).sum())  # the sum has an RMS of ~0.7
    cols = np.arange(size)[:, None]
    # (cols x 2K): sin(fx x), cos(fx x) side by side, scaled by amplitude
    x_part = np.hstack([np.sin(cols * fx) * amplitude, np.cos(cols * fx) * amplitude])
    return x_part.astype(np.float32), fy, phase


def _field(x_part, fy, phase, rows: np.ndarray) -> np.ndarray:
    """The waves' sum over ``rows`` x all columns, roughly in [-1, 1]."""
    r = rows[:, None]
    y_part = np.hstack([np.cos(r * fy + phase), np.sin(r * fy + phase)]).astype(np.float32)
    return y_part @ x_part.T


def rgb_imagery(path: Path, size: int, *, seed: int = 1) -> Path:
    """``size`` x ``size`` x 3 uint8, like an orthophoto: terrain shading, fields, noise."""
    rng = np.random.default_rng(seed)
    bands = [_waves(rng, size, lowest=8, highest=size / 2) for _ in range(3)]
    common = _waves(rng, size, lowest=16, highest=size / 2)
    base = (np.array([95, 110, 80]), np.array([70, 60, 55]))
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(500_000, 5_100_000, 0.5, 0.5),
        photometric="RGB",
    )
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(_partial(path), "w", **profile) as dst:
        for row in range(0, size, ROWS_PER_BLOCK):
            rows = np.arange(row, min(size, row + ROWS_PER_BLOCK))
            shade = _field(*common, rows)
            block = np.empty((3, len(rows), size), np.uint8)
            for b, waves in enumerate(bands):
                value = base[0][b] + base[1][b] * (0.6 * shade + 0.4 * _field(*waves, rows))
                value += rng.normal(0, 3.0, value.shape).astype(np.float32)  # texture / noise
                block[b] = np.clip(value, 0, 255)
            dst.write(block, window=Window(0, row, size, len(rows)))
    os.replace(_partial(path), path)
    return path


def float_dem(path: Path, size: int, *, seed: int = 2) -> Path:
    """``size`` x ``size`` float32 elevation in metres, cm precision, with nodata holes and a
    nodata edge (like a clipped survey)."""
    rng = np.random.default_rng(seed)
    terrain = _waves(rng, size, lowest=6, highest=size)
    holes = _waves(rng, size, lowest=size / 16, highest=size / 2)
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype="float32",
        crs="EPSG:32633",
        transform=from_origin(600_000, 5_100_000, 2.0, 2.0),
        nodata=DEM_NODATA,
    )
    cols = np.arange(size)[None, :]
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(_partial(path), "w", **profile) as dst:
        for row in range(0, size, ROWS_PER_BLOCK):
            rows = np.arange(row, min(size, row + ROWS_PER_BLOCK))
            z = 900 + 700 * _field(*terrain, rows)
            z += rng.normal(0, 0.05, z.shape).astype(np.float32)
            z = np.round(z, 2).astype(np.float32)
            missing = (_field(*holes, rows) > 0.9) | (
                cols > size - (rows[:, None] // 3) - size // 8
            )
            z[missing] = DEM_NODATA
            dst.write(z, 1, window=Window(0, row, size, len(rows)))
    os.replace(_partial(path), path)
    return path


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


# name -> (generator, size); the sizes double in pixel count from one to the next.
INPUTS = {
    "rgb-5000": (rgb_imagery, 5000),
    "rgb-7071": (rgb_imagery, 7071),
    "rgb-10000": (rgb_imagery, 10000),
    "rgb-14142": (rgb_imagery, 14142),
    "dem-5657": (float_dem, 5657),
    "dem-8000": (float_dem, 8000),
    "dem-11314": (float_dem, 11314),
}


def ensure(name: str, folder: Path) -> Path:
    """The input's path, generated first if it is not there yet."""
    generate, size = INPUTS[name]
    path = folder / f"{name}.tif"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        print(f"generating {path} ...", flush=True)
        generate(path, size)
    return path
