from django.contrib import admin, messages

from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services.delivery import webhook_delivery_redeliver


class ReadOnlyAdmin(admin.ModelAdmin):
    """Read-only: endpoints are the users' (the API), deliveries a log."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    list_display = ("url", "owner", "events", "is_active", "disabled_reason", "created_at")
    list_filter = ("is_active", "created_at")
    search_fields = ("url", "description", "owner__username")
    list_select_related = ("owner",)
    # Never the secret.
    fields = (
        "id",
        "owner",
        "url",
        "description",
        "events",
        "is_active",
        "disabled_reason",
        "disabled_at",
        "created_at",
        "secret_rotated_at",
    )
    readonly_fields = fields


class AttemptInline(admin.TabularInline):
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
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "event_type",
        "endpoint",
        "state",
        "attempts",
        "last_status_code",
        "created_at",
        "finished_at",
    )
    list_filter = ("state", "event__type", "created_at")
    search_fields = ("id", "event__id", "endpoint__url")
    list_select_related = ("event", "endpoint")
    inlines = (AttemptInline,)
    actions = ("send_again",)
    fields = (
        "id",
        "event_type",
        "webhook_id",
        "endpoint",
        "state",
        "manual",
        "redelivery_of",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "created_at",
        "finished_at",
        "payload",
    )
    readonly_fields = fields

    def has_operate_permission(self, request):
        """Send again: staff holding the change permission (the form stays read-only)."""
        user = request.user
        return user.is_active and user.is_staff and user.has_perm("webhooks.change_webhookdelivery")

    @admin.display(description="event", ordering="event__type")
    def event_type(self, delivery):
        return delivery.event.type

    @admin.display(description="webhook-id")
    def webhook_id(self, delivery):
        return delivery.event.message_id

    @admin.display(description="payload")
    def payload(self, delivery):
        return delivery.event.payload

    @admin.action(description="Send selected deliveries again", permissions=["operate"])
    def send_again(self, request, queryset):
        count = 0
        for delivery in queryset:
            webhook_delivery_redeliver(delivery=delivery)
            count += 1
        self.message_user(request, f"{count} delivery(ies) sent again.", messages.SUCCESS)
