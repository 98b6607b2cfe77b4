from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _register_periodic_tasks(sender, **kwargs):
    from geoconvert.beat import periodic_tasks_register

    periodic_tasks_register()


class GeoconvertConfig(AppConfig):
    name = "geoconvert"
    verbose_name = "Geo-raster conversions"

    def ready(self):
        from django.conf import settings

        from geoconvert.raster import render

        # The engine knows no settings: the app sizes its pool of open COGs for tiles.
        render.DATASETS.max_idle = settings.TAGGER_TILE_OPEN_DATASETS
        if not settings.TAGGER_TILE_OVERVIEW_READS:
            render.OVERVIEW_OVERSAMPLING = 0
        # After every `migrate` (and test-database flush): beat's schedule always holds
        # tagger's periodic tasks, without overwriting what an operator edited.
        post_migrate.connect(
            _register_periodic_tasks, sender=self, dispatch_uid="geoconvert.periodic_tasks"
        )
        from geoconvert.services import batches, dispatch
        from geoconvert.signals import conversion_changed

        # Inside each transition's transaction: a batch moves on with its members; once
        # committed, the dispatcher releases what the change made room for.
        conversion_changed.connect(batches.on_conversion_changed, dispatch_uid="geoconvert.batches")
        conversion_changed.connect(
            dispatch.on_conversion_changed, dispatch_uid="geoconvert.dispatch"
        )
