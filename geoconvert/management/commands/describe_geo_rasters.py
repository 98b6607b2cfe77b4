from django.core.management.base import BaseCommand, CommandError

from geoconvert import raster
from geoconvert.management.commands._output import EXIT_FAILED, EXIT_USAGE
from geoconvert.services.describe import geo_raster_describe
from tagger.models import GeoRaster
from tagger.selectors import as_uuid


class Command(BaseCommand):
    help = (
        "Compute the statistics and thumbnail of converted items again, here and now (the "
        "follow-up task of each conversion does it on its own). Exit code 0 when all "
        "succeeded, 1 when any failed, 2 for bad arguments."
    )

    def add_arguments(self, parser):
        parser.add_argument("item_ids", nargs="*", metavar="ITEM_ID", help="items to describe")
        parser.add_argument("--all", action="store_true", help="every converted item")
        parser.add_argument(
            "--missing", action="store_true", help="every converted item without statistics"
        )

    def handle(self, *args, item_ids=(), all=False, missing=False, **options):
        if bool(item_ids) + all + missing != 1:
            raise CommandError(
                "Name item ids, or give --all or --missing (one of the three).",
                returncode=EXIT_USAGE,
            )
        ids = _item_ids(item_ids, missing=missing)
        failed = 0
        for item_id in ids:
            try:
                summary = geo_raster_describe(item_id=item_id)
            except raster.RasterError as exc:
                failed += 1
                self.stderr.write(f"{item_id}: failed: {exc}")
                continue
            if summary.described:
                self.stdout.write(f"{item_id}: {summary.bands} band(s), {summary.thumbnail}")
            else:
                failed += 1
                self.stderr.write(f"{item_id}: not described: {summary.reason}")
        self.stdout.write(f"{len(ids) - failed} of {len(ids)} described.")
        if failed:
            raise CommandError(f"{failed} item(s) not described.", returncode=EXIT_FAILED)


def _item_ids(given, *, missing: bool) -> list:
    if not given:
        rasters = GeoRaster.objects.order_by("created_at")
        if missing:
            rasters = rasters.filter(statistics__isnull=True)
        return list(rasters.values_list("item_id", flat=True))
    ids = []
    for text in given:
        item_id = as_uuid(text)
        if item_id is None:
            raise CommandError(f"Not an item id: {text!r}.", returncode=EXIT_USAGE)
        ids.append(item_id)
    return ids
