import json

import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from geoconvert import raster
from geoconvert.services.engine import cog_options
from tests import rasters
from tests.geoconvert.commands.helpers import run, run_process


def test_converts_like_the_worker(tmp_path, settings):
    settings.GEOCONVERT = {**settings.GEOCONVERT, "COMPRESSION": "LZW", "BLOCKSIZE": 256}
    src = rasters.float_dem_tiff(tmp_path / "dem.tif")
    dst = tmp_path / "dem.cog.tif"

    code, out, err = run("convert_raster", str(src), str(dst), "--json", "--no-progress")

    assert code == 0, err
    info = json.loads(out)
    assert cog_validate(str(dst))[0]
    with rasterio.open(dst) as cog:
        # The settings the worker reads (geoconvert.services.engine.cog_options) were applied.
        assert cog.compression.name.upper() == "LZW" == cog_options().compression
        assert cog.block_shapes[0] == (256, 256)
        assert info["width"] == cog.width and info["crs"] == cog.crs.to_string()
    assert info["seconds"] >= 0
    rasters.assert_same_pixels(src, dst)
    assert err == ""  # no progress bar asked for


def test_target_crs_and_summary_line(tmp_path):
    src = rasters.rgb_byte_tiff(tmp_path / "rgb.tif")
    dst = tmp_path / "out.tif"

    code, out, _ = run("convert_raster", str(src), str(dst), "--target-crs", "EPSG:4326")

    assert code == 0
    assert out.startswith(f"Wrote {dst} in ")
    assert "CRS EPSG:4326" in out
    with rasterio.open(dst) as cog:
        assert cog.crs.to_epsg() == 4326


def test_progress_bar(tmp_path):
    src = rasters.rgb_byte_tiff(tmp_path / "rgb.tif")

    code, _, err = run("convert_raster", str(src), str(tmp_path / "out.tif"), "--progress")

    assert code == 0
    frames = err.split("\r")
    assert "  10% Loading file" in frames[1]
    assert frames[-1].startswith("[" + "#" * 30 + "] 100% Conversion complete")


def test_a_bad_file_exits_1_with_the_engines_message(tmp_path):
    src = rasters.text_file(tmp_path / "notes.tif")
    dst = tmp_path / "out.tif"

    code, _, err = run("convert_raster", str(src), str(dst))

    assert code == 1
    with pytest.raises(raster.RasterError) as engine:
        raster.convert(src, dst)
    assert str(engine.value) in err
    assert not dst.exists() and list(tmp_path.glob(".*partial*")) == []


def test_usage_errors_exit_2(tmp_path):
    src = rasters.rgb_byte_tiff(tmp_path / "rgb.tif")
    assert run("convert_raster", str(tmp_path / "missing.tif"), str(tmp_path / "o.tif"))[0] == 2
    assert run("convert_raster", str(src), str(tmp_path / "no" / "dir.tif"))[0] == 2
    assert run("convert_raster", str(src), str(tmp_path / "o.tif"), "--crs", "EPSG:4326")[0] == 2


def test_as_a_process_with_help(tmp_path):
    helped = run_process("convert_raster", "--help")
    assert helped.returncode == 0
    assert "--target-crs" in helped.stdout
    assert "Exit code 0 on success" in " ".join(helped.stdout.split())
