from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _register_periodic_tasks(sender, **kwargs):
    from geoconvert.beat import periodic_tasks_register

    periodic_tasks_register()


class GeoconvertConfig(AppConfig):
    name = "geoconvert"
    verbose_name = "Geo-raster conversions"

    def ready(self):
        # After every `migrate` (and test-database flush): beat's schedule always holds
        # tagger's periodic tasks, without overwriting what an operator edited.
        post_migrate.connect(
            _register_periodic_tasks, sender=self, dispatch_uid="geoconvert.periodic_tasks"
        )
