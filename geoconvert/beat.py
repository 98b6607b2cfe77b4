from django_celery_beat import schedulers


class DatabaseScheduler(schedulers.DatabaseScheduler):
    """django-celery-beat's scheduler, minus its default entry.

    The parent rewrites a `celery.backend_cleanup` entry at every start, undoing what an
    operator set in the admin. tagger registers that cleanup itself at migrate time, as
    "Clean up expired task results" (geoconvert.services.PERIODIC_TASKS).
    """

    def install_default_entries(self, data):
        pass
