"""The Celery application: configured from Django settings (CELERY_* names)."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("tagger")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_configure.connect
def _django_apps_ready(sender, **kwargs):
    """Load Django's apps before Celery uses its configuration, in every `celery` command.

    Celery's Django fix-up does it for the worker and beat only; `celery result <task id>`
    (and other commands that read the result backend) would otherwise import
    django-celery-results' models first and fail with AppRegistryNotReady.
    """
    from django.apps import apps

    if not apps.ready and not apps.loading:
        import django

        django.setup()


@signals.worker_ready.connect
def _worker_presence_start(sender=None, **kwargs):
    """Each worker keeps its presence in Redis: what `tagger_workers_online` counts."""
    from monitoring.workers import presence_start

    presence_start(sender)


@signals.worker_shutdown.connect
def _worker_presence_stop(sender=None, **kwargs):
    from monitoring.workers import presence_stop

    presence_stop()
