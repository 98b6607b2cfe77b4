import uuid

from django.conf import settings
from django.db import models

from tagger.models import TreeItem


class Stage(models.TextChoices):
    """The stage text a conversion reports, in order; see STAGE_PROGRESS."""

    # PENDING until its run_at: geoconvert.services.dispatch sends it then.
    SCHEDULED = "Scheduled"
    QUEUED = "Waiting in queue"
    STARTING = "Starting conversion"
    LOADING = "Loading file"
    ANALYZING = "Analyzing file"
    CREATING = "Creating georeferenced file"
    UPDATING = "Updating database"
    COMPLETE = "Conversion complete"


STAGE_PROGRESS = {
    Stage.SCHEDULED: 0,
    Stage.QUEUED: 0,
    Stage.STARTING: 0,
    Stage.LOADING: 10,
    Stage.ANALYZING: 20,
    Stage.CREATING: 40,
    Stage.UPDATING: 80,
    Stage.COMPLETE: 100,
}


class Priority(models.IntegerChoices):
    """A conversion's lane: the dispatcher releases a user's waiting conversions in this
    order, and the broker delivers them in it (BROKER_PRIORITY)."""

    HIGH = 0, "high"
    NORMAL = 1, "normal"
    LOW = 2, "low"


# kombu's Redis transport keeps one list per priority step (0, 3, 6, 9) and reads the
# lowest first.
BROKER_PRIORITY = {Priority.HIGH: 0, Priority.NORMAL: 3, Priority.LOW: 6}


class ConversionBatch(models.Model):
    """The conversion of a folder's files: its members are ordinary conversions
    (Conversion.batch), and its counts are one aggregate over them
    (geoconvert.selectors.batch_summary)."""

    class State(models.TextChoices):
        PENDING = "PENDING"  # no member has started
        PROGRESS = "PROGRESS"
        COMPLETED = "COMPLETED"  # every member has finished (the counts say how)
        CANCELLED = "CANCELLED"

    FINISHED_STATES = (State.COMPLETED, State.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversion_batches"
    )
    # The folder converted; null once it is deleted (the batch's record stays).
    folder = models.ForeignKey(
        TreeItem, on_delete=models.SET_NULL, null=True, blank=True, related_name="batches"
    )
    recursive = models.BooleanField(default=True)
    params = models.JSONField(default=dict, blank=True)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.LOW)
    run_at = models.DateTimeField(null=True, blank=True)
    # Members created; files of the folder left out (converted or converting already).
    total = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.PENDING, db_index=True
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "conversion batch"
        verbose_name_plural = "conversion batches"

    def __str__(self) -> str:
        return f"batch {self.id} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED_STATES


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
    batch = models.ForeignKey(
        ConversionBatch,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversions",
    )
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    # Not sent before this time (a scheduled conversion); null: as soon as it may.
    run_at = models.DateTimeField(null=True, blank=True)
    # When the dispatcher sent its task to the broker; null while it waits in the database
    # (fair sharing: geoconvert.services.dispatch). Set in the claim that sends it, so a
    # conversion is sent once.
    queued_at = models.DateTimeField(null=True, blank=True)
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
        indexes = [
            models.Index(fields=("owner", "state")),
            # What the dispatcher reads: each user's conversions waiting in the database.
            models.Index(
                fields=("owner", "priority", "created_at"),
                condition=models.Q(state="PENDING", queued_at__isnull=True),
                name="conversion_waiting",
            ),
            models.Index(fields=("batch", "state"), name="conversion_batch_state"),
        ]

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


class ConversionMetric(models.Model):
    """One running total of the conversions' metrics, kept by geoconvert.services.metrics as
    conversions start, change stage and end: `/metrics` reads these few rows, not every
    conversion, and they only ever grow (a deleted conversion stays counted), as a
    Prometheus counter must."""

    # e.g. "duration_seconds"; see geoconvert.services.metrics.HISTOGRAMS.
    family = models.CharField(max_length=64)
    # The value of the family's one label (a state, an outcome, a stage), or "".
    label = models.CharField(max_length=64, blank=True)
    # A histogram bucket's upper bound ("0.5", "+Inf": observations in it alone, not
    # cumulative), "sum" for the sum of the observations; "" for a counter.
    le = models.CharField(max_length=32, blank=True)
    value = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("family", "label", "le"), name="one_row_per_series")
        ]

    def __str__(self) -> str:
        return f"{self.family}{{{self.label}}} {self.le}: {self.value:g}"
