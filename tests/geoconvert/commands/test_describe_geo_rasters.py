from tagger.models import GeoRaster
from tests import rasters
from tests.geoconvert.api.helpers import convert_in_process
from tests.geoconvert.commands.helpers import run
from tests.storage import store_bytes, stored_exists


def test_describes_the_items_named_then_the_missing_ones(user, tmp_path):
    first = convert_in_process(user, rasters.rgb_byte_tiff(tmp_path / "a.tif"), describe=False)
    second = convert_in_process(user, rasters.float_dem_tiff(tmp_path / "b.tif"), describe=False)

    code, out, err = run("describe_geo_rasters", str(first.pk))
    assert code == 0, err
    assert out.splitlines()[-1] == "1 of 1 described."
    described = GeoRaster.objects.get(pk=first.pk)
    assert len(described.statistics["bands"]) == 3
    assert stored_exists(described.thumbnail.name)
    assert GeoRaster.objects.get(pk=second.pk).statistics is None

    code, out, _ = run("describe_geo_rasters", "--missing")
    assert code == 0 and out.splitlines()[-1] == "1 of 1 described."
    assert GeoRaster.objects.get(pk=second.pk).statistics["bands"][0]["valid_pixels"] > 0

    code, out, _ = run("describe_geo_rasters", "--all")
    assert code == 0 and out.splitlines()[-1] == "2 of 2 described."


def test_an_unreadable_cog_fails_with_exit_code_1_and_the_others_go_on(user, tmp_path):
    broken = convert_in_process(user, rasters.rgb_byte_tiff(tmp_path / "a.tif"), describe=False)
    fine = convert_in_process(user, rasters.rgb_byte_tiff(tmp_path / "b.tif"), describe=False)
    store_bytes(broken.geo_raster.file.name, b"not a tiff")

    code, out, err = run("describe_geo_rasters", "--all")

    assert code == 1
    assert f"{broken.pk}: failed:" in err
    assert out.splitlines()[-1] == "1 of 2 described."
    assert GeoRaster.objects.get(pk=fine.pk).statistics is not None


def test_bad_arguments_exit_2(db):
    assert run("describe_geo_rasters")[0] == 2
    assert run("describe_geo_rasters", "--all", "--missing")[0] == 2
    code, _, err = run("describe_geo_rasters", "not-an-id")
    assert code == 2 and "Not an item id" in err
