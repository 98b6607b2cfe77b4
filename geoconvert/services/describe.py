"""After a conversion: the COG's per-band statistics and its thumbnail.

Run by the follow-up task that the conversion's task links to (so it is a task of its own
in the result backend, Flower and the admin), and by `manage.py describe_geo_rasters`. The
conversion is SUCCESS before this starts; whatever happens here never changes that.
"""

import logging
from dataclasses import asdict, dataclass

from geoconvert.raster import render, statistics
from geoconvert.services.engine import storage_env
from tagger import storage
from tagger.models import GeoRaster
from tagger.services import geo_raster_describe_save

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DescribeSummary:
    item_id: str
    described: bool
    reason: str = ""
    thumbnail: str = ""
    bands: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def geo_raster_describe(*, item_id) -> DescribeSummary:
    """Compute and record the statistics and thumbnail of the item's current COG.

    The result is recorded only if the COG is still the one it was computed from: a
    reconversion meanwhile (a new hash) leaves the newer COG's own follow-up to do it.
    Raises RasterError when the COG cannot be read.
    """
    geo_raster = GeoRaster.objects.select_related("item").filter(item_id=item_id).first()
    if geo_raster is None:
        return DescribeSummary(str(item_id), False, "The item has no geo-raster.")
    cog = storage.gdal_name(geo_raster.file.name)
    # Each reads under the engine's cog_env(), with a working block cache (not gdal_env()).
    with storage_env():
        stats = statistics.raster_statistics(cog)
        png = render.thumbnail_png(cog, statistics=stats)
    name = storage.item_file_path(geo_raster.item, f"thumbnail-{geo_raster.sha256[:12]}.png")
    storage.file_write(name, png)
    if not geo_raster_describe_save(
        item_id=geo_raster.item_id, sha256=geo_raster.sha256, statistics=stats, thumbnail_name=name
    ):
        storage.file_delete(name)
        return DescribeSummary(str(item_id), False, "The item's geo-raster changed meanwhile.")
    logger.info("Statistics and thumbnail of item %s recorded", item_id)
    return DescribeSummary(str(item_id), True, thumbnail=name, bands=len(stats["bands"]))
