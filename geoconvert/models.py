import uuid

from django.conf import settings
from django.db import models

from tagger.models import TreeItem


class Stage(models.TextChoices):
    """The stage text a conversion reports, in order; see STAGE_PROGRESS."""

    QUEUED = "Waiting in queue"
    STARTING = "Starting conversion"
    LOADING = "Loading file"
    ANALYZING = "Analyzing file"
    CREATING = "Creating georeferenced file"
    UPDATING = "Updating database"
    COMPLETE = "Conversion complete"


STAGE_PROGRESS = {
    Stage.QUEUED: 0,
    Stage.STARTING: 0,
    Stage.LOADING: 10,
    Stage.ANALYZING: 20,
    Stage.CREATING: 40,
    Stage.UPDATING: 80,
    Stage.COMPLETE: 100,
}


class Conversion(models.Model):
    """One attempt to turn an item into a COG: the source of truth for the API.

    The primary key is the Celery task id, so the row exists (PENDING) from the moment of the
    request, before any worker sees the message.
    """

    class State(models.TextChoices):
        PENDING = "PENDING"
        PROGRESS = "PROGRESS"
        SUCCESS = "SUCCESS"
        FAILURE = "FAILURE"
        CANCELLED = "CANCELLED"

    ACTIVE_STATES = (State.PENDING, State.PROGRESS)
    FINISHED_STATES = (State.SUCCESS, State.FAILURE, State.CANCELLED)

    task_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    item = models.ForeignKey(TreeItem, on_delete=models.CASCADE, related_name="conversions")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversions"
    )
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.PENDING, db_index=True
    )
    stage = models.CharField(max_length=64, choices=Stage.choices, default=Stage.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Runs a worker has started for this conversion (redeliveries and retries included).
    attempts = models.PositiveSmallIntegerField(default=0)
    # What the request asked for: {"target_crs": ..., "crs": ..., "bounds": [...]}.
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    retry_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries"
    )
    # Identifies the run that holds the conversion: every write from a run checks it, so a
    # duplicate delivery of the same message can never overwrite another run's work.
    claim = models.UUIDField(null=True, blank=True, editable=False)
    worker = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When the running conversion is expected to end, estimated from its rate so far; null
    # until it can be (the status's eta_seconds counts down to it).
    eta_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(
                fields=("item",),
                condition=models.Q(state__in=("PENDING", "PROGRESS")),
                name="one_active_conversion_per_item",
            ),
        ]
        indexes = [models.Index(fields=("owner", "state"))]

    def __str__(self) -> str:
        return f"{self.task_id} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED_STATES

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None
