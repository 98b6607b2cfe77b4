from django.utils import timezone
from rest_framework import serializers

from geoconvert.models import Conversion, ConversionBatch, Priority
from tagger import links

PRIORITIES = {priority.label: priority.value for priority in Priority}


class PriorityField(serializers.ChoiceField):
    """A lane by name ("high", "normal", "low"), stored as Priority's number."""

    def __init__(self, **kwargs):
        super().__init__(choices=list(PRIORITIES), **kwargs)

    def to_internal_value(self, data):
        return PRIORITIES[super().to_internal_value(data)]

    def to_representation(self, value):
        return Priority(value).label


class ConvertInput(serializers.Serializer):
    target_crs = serializers.CharField(required=False, max_length=2000)
    crs = serializers.CharField(required=False, max_length=2000)
    bounds = serializers.ListField(
        child=serializers.FloatField(), min_length=4, max_length=4, required=False
    )
    priority = PriorityField(
        required=False, help_text='Default "normal" for a file, "low" for a folder\'s files.'
    )
    run_at = serializers.DateTimeField(
        required=False,
        help_text="Not before this time (ISO 8601 with a time zone, at most 30 days ahead).",
    )
    recursive = serializers.BooleanField(
        required=False,
        default=True,
        help_text="A folder: its whole subtree (default), or its own files only.",
    )

    def validate(self, attrs):
        if ("crs" in attrs) != ("bounds" in attrs):
            raise serializers.ValidationError("Give 'crs' and 'bounds' together.")
        return attrs


class _TaskAnswerOutput(serializers.Serializer):
    """What a request about a task answers at once: its id, a status word and a message."""

    STATUS = ""
    MESSAGE = ""

    task_id = serializers.UUIDField()
    status = serializers.SerializerMethodField()
    message = serializers.SerializerMethodField()

    def get_status(self, conversion) -> str:
        return self.STATUS

    def get_message(self, conversion) -> str:
        return self.MESSAGE


class ConvertAcceptedOutput(_TaskAnswerOutput):
    STATUS = "STARTED"
    MESSAGE = "Geo-raster conversion started in background"


class BatchAcceptedOutput(serializers.Serializer):
    batch_id = serializers.UUIDField(source="id")
    status = serializers.SerializerMethodField()
    message = serializers.SerializerMethodField()
    total = serializers.IntegerField(help_text="Files to convert: the batch's members.")
    skipped = serializers.IntegerField(help_text="Files left out: converted or converting.")

    def get_status(self, batch) -> str:
        return "STARTED"

    def get_message(self, batch) -> str:
        return f"Conversion of {batch.total} files started in background"


class BatchCountsOutput(serializers.Serializer):
    PENDING = serializers.IntegerField()
    PROGRESS = serializers.IntegerField()
    SUCCESS = serializers.IntegerField()
    FAILURE = serializers.IntegerField()
    CANCELLED = serializers.IntegerField()


class BatchOutput(serializers.Serializer):
    """For the schema: the views answer geoconvert.selectors.batch_summary as it is."""

    batch_id = serializers.UUIDField()
    folder_id = serializers.UUIDField(allow_null=True)
    state = serializers.ChoiceField(choices=ConversionBatch.State.choices)
    priority = serializers.ChoiceField(choices=list(PRIORITIES))
    run_at = serializers.DateTimeField(allow_null=True)
    total = serializers.IntegerField()
    skipped = serializers.IntegerField()
    counts = BatchCountsOutput(help_text="Members by state (each file's latest attempt).")
    progress = serializers.IntegerField(help_text="0..100 over all members.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class BatchRetryOutput(BatchOutput):
    retried = serializers.IntegerField(help_text="Failed members started again.")


ITEM_STATUS = {
    None: "NOT_STARTED",
    Conversion.State.PENDING: "PENDING",
    Conversion.State.PROGRESS: "PROGRESS",
    Conversion.State.SUCCESS: "COMPLETED",
    Conversion.State.FAILURE: "FAILED",
    Conversion.State.CANCELLED: "CANCELLED",
}


class ItemConversionStatusOutput(serializers.Serializer):
    """Reads an item annotated by selectors.item_with_latest_conversion."""

    item_id = serializers.UUIDField(source="id")
    status = serializers.SerializerMethodField()
    object_type = serializers.CharField()
    message = serializers.SerializerMethodField()
    task_id = serializers.UUIDField(source="latest_task_id", allow_null=True)
    progress = serializers.SerializerMethodField()

    def get_status(self, item) -> str:
        if item.object_type == "geo_raster_file":
            return "COMPLETED"
        return ITEM_STATUS[item.latest_state]

    def get_progress(self, item) -> int:
        if item.object_type == "geo_raster_file":
            return 100
        return item.latest_progress or 0

    def get_message(self, item) -> str:
        status = self.get_status(item)
        if status == "COMPLETED":
            return "File is converted to geo raster"
        if status == "NOT_STARTED":
            return (
                "No conversion has been requested for this file"
                if item.file
                else ("Folders cannot be converted")
            )
        if status == "PENDING":
            return "Conversion is waiting in queue"
        if status == "PROGRESS":
            if item.latest_cancel_requested:
                return f"Cancellation requested; {item.latest_stage}"
            return item.latest_stage
        if status == "FAILED":
            return item.latest_error or "Conversion failed"
        return "Conversion was cancelled"


class TaskStatusOutput(serializers.ModelSerializer):
    state = serializers.CharField()
    status = serializers.CharField(source="stage")
    result = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    eta_seconds = serializers.SerializerMethodField()

    class Meta:
        model = Conversion
        fields = ("task_id", "state", "status", "progress", "eta_seconds", "result", "error")

    def get_result(self, conversion) -> dict | None:
        return conversion.result if conversion.state == Conversion.State.SUCCESS else None

    def get_error(self, conversion) -> str | None:
        return conversion.error or None if conversion.state == Conversion.State.FAILURE else None

    def get_eta_seconds(self, conversion) -> int | None:
        """Seconds until the running conversion is expected to end; null until estimated."""
        if conversion.state != Conversion.State.PROGRESS or conversion.eta_at is None:
            return None
        return max(0, round((conversion.eta_at - timezone.now()).total_seconds()))

    def to_representation(self, conversion):
        body = super().to_representation(conversion)
        if conversion.run_at is not None:  # a scheduled conversion says when it will run
            body["run_at"] = serializers.DateTimeField().to_representation(conversion.run_at)
        return body


class TaskListOutput(TaskStatusOutput):
    item_id = serializers.UUIDField()
    batch_id = serializers.UUIDField(allow_null=True)
    priority = PriorityField()
    run_at = serializers.DateTimeField(allow_null=True)

    class Meta(TaskStatusOutput.Meta):
        fields = (
            *TaskStatusOutput.Meta.fields,
            "item_id",
            "batch_id",
            "priority",
            "run_at",
            "attempts",
            "cancel_requested",
            "created_at",
            "started_at",
            "finished_at",
        )


class CancelOutput(_TaskAnswerOutput):
    STATUS = "CANCELLED"
    MESSAGE = "Task cancellation requested"


class HealthOutput(serializers.Serializer):
    """For the schema only: the view returns health.service_health() as it is."""

    status = serializers.ChoiceField(choices=["ok", "degraded", "unavailable"])
    database = serializers.CharField(help_text='"ok" or "unavailable"')
    broker = serializers.CharField(help_text='"ok" or "unavailable"')
    workers = serializers.IntegerField(allow_null=True, help_text="workers answering a ping")


class TileJSONInput(serializers.Serializer):
    scale = serializers.ChoiceField(
        choices=(1, 2), default=1, help_text="2: the template names 512 px (@2x) tiles."
    )


class TileJSONOutput(serializers.Serializer):
    tilejson = serializers.CharField()
    name = serializers.CharField()
    scheme = serializers.CharField()
    tiles = serializers.ListField(child=serializers.CharField())
    bounds = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4)
    center = serializers.ListField(child=serializers.FloatField(), min_length=3, max_length=3)
    minzoom = serializers.IntegerField()
    maxzoom = serializers.IntegerField()


class EventLinkInput(serializers.Serializer):
    expires_in = serializers.IntegerField(
        min_value=1, max_value=links.MAX_SECONDS, default=links.DEFAULT_SECONDS
    )


class EventLinkOutput(serializers.Serializer):
    url = serializers.URLField()
    expires_at = serializers.DateTimeField()
