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


# Each task's log lines carry its id and the id of the API request that sent it.
@signals.before_task_publish.connect
def _request_id_header(headers=None, **kwargs):
    from tagger.logs import task_headers_add

    task_headers_add(headers=headers)


@signals.task_prerun.connect
def _task_log_context(task_id=None, task=None, **kwargs):
    from tagger.logs import task_context_start

    task_context_start(task_id=task_id, task=task)


@signals.task_postrun.connect
def _task_log_context_end(task_id=None, **kwargs):
    from tagger.logs import task_context_end

    task_context_end(task_id=task_id)


@signals.celeryd_after_setup.connect
def _engine_threads(sender=None, instance=None, **kwargs):
    """Before the pool forks: how many processes will convert at once, which sets each
    conversion's threads (geoconvert.services.engine.cog_options)."""
    from geoconvert.services.engine import worker_processes_set

    worker_processes_set(getattr(instance, "max_concurrency", None) or instance.concurrency)


@signals.worker_ready.connect
def _worker_presence_start(sender=None, **kwargs):
    """Each worker keeps its presence in Redis: what `tagger_workers_online` counts."""
    from monitoring.workers import presence_start

    presence_start(sender)


@signals.worker_shutdown.connect
def _worker_presence_stop(sender=None, **kwargs):
    from monitoring.workers import presence_stop

    presence_stop()
