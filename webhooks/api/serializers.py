from rest_framework import serializers

from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


class WebhookInput(serializers.Serializer):
    url = serializers.URLField(max_length=2000)
    # Default: every event but conversion.progress (opt-in).
    events = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    description = serializers.CharField(max_length=255, required=False, allow_blank=True)


class WebhookOutput(serializers.ModelSerializer):
    """An endpoint as listed: never its secret."""

    class Meta:
        model = WebhookEndpoint
        fields = (
            "id",
            "url",
            "events",
            "description",
            "is_active",
            "disabled_reason",
            "created_at",
            "secret_rotated_at",
        )


class WebhookCreatedOutput(WebhookOutput):
    """The endpoint just registered, with its secret: shown this once."""

    secret = serializers.CharField()

    class Meta(WebhookOutput.Meta):
        fields = (*WebhookOutput.Meta.fields, "secret")


class WebhookSecretOutput(serializers.ModelSerializer):
    """The new secret of a rotation: shown this once."""

    class Meta:
        model = WebhookEndpoint
        fields = ("id", "secret", "secret_rotated_at")


class DeliveryAcceptedOutput(serializers.Serializer):
    delivery_id = serializers.UUIDField(source="pk")
    webhook_id = serializers.CharField(source="event.message_id")


class AttemptOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = (
            "number",
            "started_at",
            "finished_at",
            "status_code",
            "duration_ms",
            "response_excerpt",
            "error",
        )


class DeliveryOutput(serializers.ModelSerializer):
    event_type = serializers.CharField(source="event.type")
    webhook_id = serializers.CharField(source="event.message_id")
    payload = serializers.JSONField(source="event.payload")
    attempts = AttemptOutput(source="log", many=True)

    class Meta:
        model = WebhookDelivery
        fields = (
            "id",
            "event_type",
            "webhook_id",
            "state",
            "manual",
            "redelivery_of",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "finished_at",
            "payload",
            "attempts",
        )
