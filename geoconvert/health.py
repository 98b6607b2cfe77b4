"""Reads about the infrastructure the conversions depend on: the database, the broker, the
result backend, the workers and the beat schedule.

`check_celery` runs them all for an operator; `/api/v1/health` runs the cheap ones for a load
balancer or a compose health check. Each returns a Check and never raises.
"""

import uuid
from dataclasses import dataclass, field

from celery import current_app
from django.conf import settings
from django.db import DatabaseError, connection
from kombu.exceptions import KombuError

BROKER_ERRORS = (KombuError, OSError, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    data: dict = field(default_factory=dict)


def check_database(*, migrations: bool = False) -> Check:
    """The database answers; with `migrations`, also that none is left to apply."""
    where = f"{connection.vendor} {connection.settings_dict['NAME']}"
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        if migrations:
            from django.db.migrations.executor import MigrationExecutor

            executor = MigrationExecutor(connection)
            pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
            if pending:
                return Check(
                    "database",
                    False,
                    f"{where}: {len(pending)} migration(s) not applied; run `manage.py migrate`",
                )
    except DatabaseError as exc:
        return Check("database", False, f"unreachable: {_one_line(exc)}")
    return Check("database", True, where)


def check_broker(timeout: float = 2.0) -> Check:
    app = current_app
    try:
        with app.connection_for_read(connect_timeout=timeout) as conn:
            conn.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0.2, timeout=timeout
            )
            where = conn.as_uri()  # the password masked
    except BROKER_ERRORS as exc:
        return Check("broker", False, f"unreachable ({_masked_broker()}): {_one_line(exc)}")
    return Check("broker", True, where)


def check_result_backend() -> Check:
    """Write a probe result through Celery's backend, read it back, delete it."""
    from django_celery_results.models import TaskResult

    probe = f"check-celery-{uuid.uuid4()}"
    backend = current_app.backend
    try:
        backend.store_result(probe, {"probe": True}, "SUCCESS")
        stored = TaskResult.objects.filter(task_id=probe).exists()
        TaskResult.objects.filter(task_id=probe).delete()
    except (DatabaseError, *BROKER_ERRORS) as exc:
        return Check("result backend", False, f"not writable: {_one_line(exc)}")
    if not stored:
        return Check(
            "result backend",
            False,
            f"{type(backend).__name__} accepted a result but it was not stored",
        )
    return Check("result backend", True, f"{type(backend).__name__} writable")


def check_workers(timeout: float = 2.0) -> Check:
    """Workers answering, and whether every declared queue has a consumer."""
    try:
        replies = current_app.control.inspect(timeout=timeout).active_queues() or {}
    except BROKER_ERRORS as exc:
        return Check("workers", False, f"cannot ask (broker unreachable: {_one_line(exc)})")
    queues = {name: sorted(q["name"] for q in consumed) for name, consumed in replies.items()}
    if not queues:
        return Check(
            "workers",
            False,
            f"no worker answered within {timeout:g}s: queued tasks stay PENDING",
            {"workers": {}},
        )
    served = {q for names in queues.values() for q in names}
    missing = [q for q in declared_queues() if q not in served]
    listing = "; ".join(f"{name} [{', '.join(names)}]" for name, names in sorted(queues.items()))
    if missing:
        return Check(
            "workers",
            False,
            f"no worker consumes {', '.join(missing)} (tasks there stay PENDING); {listing}",
            {"workers": queues},
        )
    return Check("workers", True, f"{len(queues)} answering: {listing}", {"workers": queues})


def worker_count(timeout: float = 0.5) -> int | None:
    """How many workers answer a ping; None when the broker cannot be asked."""
    try:
        return len(current_app.control.ping(timeout=timeout) or [])
    except BROKER_ERRORS:
        return None


def check_beat_schedule() -> Check:
    """The periodic tasks tagger registers exist and are enabled."""
    from django_celery_beat.models import PeriodicTask

    from geoconvert.beat import PERIODIC_TASKS

    try:
        rows = {t.name: t for t in PeriodicTask.objects.filter(name__in=PERIODIC_TASKS)}
    except DatabaseError as exc:
        return Check("beat schedule", False, f"unreadable: {_one_line(exc)}")
    missing = [name for name in PERIODIC_TASKS if name not in rows]
    disabled = [name for name, row in rows.items() if not row.enabled]
    if missing:
        return Check(
            "beat schedule",
            False,
            f"missing: {', '.join(missing)} (run `manage.py migrate` to register them)",
        )
    if disabled:
        return Check("beat schedule", False, f"disabled in the admin: {', '.join(disabled)}")
    last = max((row.last_run_at for row in rows.values() if row.last_run_at), default=None)
    ran = f"last run {last:%Y-%m-%d %H:%M:%S %Z}" if last else "not run yet"
    return Check("beat schedule", True, f"{len(rows)} periodic tasks enabled, {ran}")


def beat_last_run_at():
    """When beat last sent one of tagger's periodic tasks (None if never)."""
    from django.db.models import Max
    from django_celery_beat.models import PeriodicTask

    from geoconvert.beat import PERIODIC_TASKS

    rows = PeriodicTask.objects.filter(name__in=PERIODIC_TASKS, enabled=True)
    return rows.aggregate(last=Max("last_run_at"))["last"]


def declared_queues() -> list[str]:
    return [queue.name for queue in settings.CELERY_TASK_QUEUES]


def _masked_broker() -> str:
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(current_app.conf.broker_url)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def service_health(*, timeout: float = 1.0) -> dict:
    """What `/api/v1/health` reports: nothing but states and a count (no hosts, no errors).

    "ok": database, broker and at least one worker answer. "degraded": database and broker
    answer but no worker does; requests are accepted and conversions queue until a worker
    starts. "unavailable": the database or the broker does not answer.
    """
    database = check_database().ok
    broker = check_broker(timeout).ok
    workers = worker_count(timeout) if broker else None
    if not (database and broker):
        status = "unavailable"
    else:
        status = "ok" if workers else "degraded"
    return {
        "status": status,
        "database": "ok" if database else "unavailable",
        "broker": "ok" if broker else "unavailable",
        "workers": workers,
    }
