"""Beat's schedule: the periodic tasks tagger runs, registered at `migrate`, then edited in
the admin (django-celery-beat's database scheduler)."""

import logging
from dataclasses import dataclass

from django.conf import settings
from django_celery_beat import schedulers
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicTaskSpec:
    task: str
    every_seconds: int | None = None
    crontab: str | None = None  # "minute hour day_of_month month_of_year day_of_week"
    description: str = ""


# Beat's schedule (django-celery-beat): registered by `migrate`, then edited in the admin.
PERIODIC_TASKS = {
    "Clean up expired task results": PeriodicTaskSpec(
        task="celery.backend_cleanup",
        crontab="0 4 * * *",
        description="Deletes task results older than CELERY_RESULT_EXPIRES.",
    ),
    "Reap stale conversions": PeriodicTaskSpec(
        task="geoconvert.tasks.reap_stale_conversions",
        every_seconds=60,
        description="Re-queues or fails conversions whose worker stopped sending heartbeats.",
    ),
    "Release waiting conversions": PeriodicTaskSpec(
        task="geoconvert.tasks.release_conversions",
        every_seconds=5,
        description=(
            "Sends waiting conversions to the broker as each user's share allows, and "
            "scheduled ones once their time has come (geoconvert.services.dispatch)."
        ),
    ),
    "Remove orphaned files": PeriodicTaskSpec(
        task="geoconvert.tasks.remove_orphaned_files",
        every_seconds=3600,
        description="Deletes leftover .partial files and directories of deleted items.",
    ),
    # The webhooks app's (the conversion app imports nothing of it: the task goes by name).
    "Sweep webhook deliveries": PeriodicTaskSpec(
        task="webhooks.tasks.sweep_webhook_deliveries",
        every_seconds=10,
        description="Sends again webhook deliveries that are due and whose task was lost.",
    ),
}


def periodic_tasks_register() -> list[str]:
    """Create the periodic tasks that do not exist yet; returns their names.

    Existing ones are left as they are, so what an operator changed in the admin (schedule,
    enabled) survives every `migrate`.
    """
    created = []
    for name, spec in PERIODIC_TASKS.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        schedule = {}
        if spec.every_seconds:
            schedule["interval"], _ = IntervalSchedule.objects.get_or_create(
                every=spec.every_seconds, period=IntervalSchedule.SECONDS
            )
        else:
            minute, hour, day_of_month, month_of_year, day_of_week = spec.crontab.split()
            schedule["crontab"], _ = CrontabSchedule.objects.get_or_create(
                minute=minute,
                hour=hour,
                day_of_month=day_of_month,
                month_of_year=month_of_year,
                day_of_week=day_of_week,
                timezone="UTC",
            )
        # A run that could not start before the next one is due is dropped, not piled up.
        expires = spec.every_seconds or 12 * 3600
        PeriodicTask.objects.create(
            name=name,
            task=spec.task,
            queue=settings.CELERY_TASK_DEFAULT_QUEUE,
            expire_seconds=expires,
            description=spec.description,
            **schedule,
        )
        created.append(name)
    return created


# Tasks beat runs in its own process instead of sending them to a worker: a worker whose
# every process is converting takes no other task until one finishes, and the dispatcher must
# still send a scheduled conversion on time and refill each user's share (a pass takes a few
# queries and, at most, a share's worth of messages).
RUN_IN_BEAT = frozenset({"geoconvert.tasks.release_conversions"})


class DatabaseScheduler(schedulers.DatabaseScheduler):
    """django-celery-beat's scheduler, minus its default entry, running RUN_IN_BEAT itself.

    The parent rewrites a `celery.backend_cleanup` entry at every start, undoing what an
    operator set in the admin. tagger registers that cleanup itself at migrate time, as
    "Clean up expired task results" (PERIODIC_TASKS above).
    """

    def install_default_entries(self, data):
        pass

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        if entry.task not in RUN_IN_BEAT:
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        entry = self.reserve(entry) if advance else entry
        # Eager: the task's own code and signals, here; its error is logged, beat goes on.
        result = self.app.tasks[entry.task].apply(args=entry.args, kwargs=entry.kwargs)
        if result.failed():
            logger.error("%s failed in beat: %r", entry.task, result.result)
        return result
