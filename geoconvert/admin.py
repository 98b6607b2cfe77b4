from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html
from django_celery_results.models import TaskResult

from geoconvert.models import Conversion, ConversionBatch
from geoconvert.selectors import batch_summary, items_with_latest_conversion
from geoconvert.services import batches, conversions
from tagger.admin import TreeItemAdmin
from tagger.errors import ApplicationError
from tagger.models import TreeItem


@admin.register(Conversion)
class ConversionAdmin(admin.ModelAdmin):
    """Read-only: every change goes through the services, as from the API."""

    list_display = (
        "task_id",
        "item",
        "owner",
        "state",
        "stage_text",
        "progress_bar",
        "attempts",
        "priority",
        "created_at",
        "started_at",
        "finished_at",
        "duration",
    )
    list_filter = ("state", "priority", "created_at", "finished_at")
    search_fields = ("task_id", "item__name", "owner__username")
    list_select_related = ("item", "owner")
    date_hierarchy = "created_at"
    actions = ("cancel_selected", "retry_selected")
    readonly_fields = [f.name for f in Conversion._meta.fields] + [
        "stage_text",
        "progress_bar",
        "duration",
        "item_link",
        "task_result_link",
    ]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "task_id",
                    "item_link",
                    "owner",
                    "state",
                    "stage_text",
                    "progress_bar",
                    "cancel_requested",
                    "attempts",
                    "params",
                    "retry_of",
                    "batch",
                    "priority",
                )
            },
        ),
        (
            "Timing",
            {
                "fields": (
                    "created_at",
                    "run_at",
                    "queued_at",
                    "started_at",
                    "finished_at",
                    "duration",
                    "heartbeat_at",
                    "worker",
                )
            },
        ),
        ("Outcome", {"fields": ("error", "traceback", "result", "task_result_link")}),
    )

    def has_add_permission(self, request):
        return False

    def lookup_allowed(self, lookup, value, request=None):
        # The item page links to its conversions by item id, the batch page by batch id.
        return lookup in ("item__id__exact", "batch__id__exact") or super().lookup_allowed(
            lookup, value, request
        )

    def has_change_permission(self, request, obj=None):
        return False

    def has_operate_permission(self, request):
        """Cancel and retry: staff holding the change permission, not those who may only view
        (the form itself stays read-only for everyone)."""
        user = request.user
        return user.is_active and user.is_staff and user.has_perm("geoconvert.change_conversion")

    @admin.display(description="stage", ordering="stage")
    def stage_text(self, conversion):
        # The stage as the API reports it ("Loading file"), not the choice's short label.
        return conversion.stage

    @admin.display(description="progress", ordering="progress")
    def progress_bar(self, conversion):
        return format_html(
            '<progress value="{}" max="100" title="{}%"></progress> {}%',
            conversion.progress,
            conversion.progress,
            conversion.progress,
        )

    @admin.display(description="duration")
    def duration(self, conversion):
        return conversion.duration or "-"

    @admin.display(description="item")
    def item_link(self, conversion):
        url = reverse("admin:tagger_treeitem_change", args=[conversion.item_id])
        return format_html('<a href="{}">{}</a>', url, conversion.item)

    @admin.display(description="task result")
    def task_result_link(self, conversion):
        row = TaskResult.objects.filter(task_id=str(conversion.task_id)).values("pk", "status")
        row = row.first()
        if row is None:
            return "-"
        url = reverse("admin:django_celery_results_taskresult_change", args=[row["pk"]])
        return format_html(
            '<a href="{}">Task result {} ({})</a>', url, conversion.task_id, row["status"]
        )

    @admin.action(description="Cancel selected conversions", permissions=["operate"])
    def cancel_selected(self, request, queryset):
        self._apply(request, queryset, conversions.conversion_cancel, "cancelled")

    @admin.action(description="Retry selected conversions", permissions=["operate"])
    def retry_selected(self, request, queryset):
        self._apply(request, queryset, conversions.conversion_retry, "retried")

    def _apply(self, request, queryset, service, verb):
        _apply_each(
            self,
            request,
            queryset.select_related("item"),
            lambda c: service(conversion=c),
            verb,
            "conversion(s)",
        )


def _apply_each(modeladmin, request, objects, call, verb: str, noun: str) -> None:
    """`call` each selected object (a service); report how many it accepted and, for the
    others, the service's own reason."""
    done, refused = 0, []
    for obj in objects:
        try:
            call(obj)
            done += 1
        except ApplicationError as exc:
            refused.append(f"{obj.pk}: {exc.message}")
    modeladmin.message_user(
        request, f"{done} {noun} {verb}.", messages.SUCCESS if done else messages.INFO
    )
    if refused:
        modeladmin.message_user(
            request, f"{len(refused)} not {verb}: " + "; ".join(refused), messages.WARNING
        )


class LatestConversionStateFilter(admin.SimpleListFilter):
    title = "conversion state"
    parameter_name = "conversion_state"

    def lookups(self, request, model_admin):
        return [("NONE", "Never converted"), *Conversion.State.choices]

    def queryset(self, request, queryset):
        if self.value() == "NONE":
            return queryset.filter(latest_state__isnull=True)
        if self.value():
            return queryset.filter(latest_state=self.value())
        return queryset


class ConvertibleItemAdmin(TreeItemAdmin):
    """The items admin, with each item's latest conversion state and a link to its
    conversions: the items app knows nothing of conversions, so they are added here."""

    list_display = (*TreeItemAdmin.list_display[:-1], "conversion_state", "created_at")
    list_filter = (*TreeItemAdmin.list_filter, LatestConversionStateFilter)
    fields = (*TreeItemAdmin.fields[:-2], "conversions", *TreeItemAdmin.fields[-2:])
    readonly_fields = fields

    def get_queryset(self, request):
        return items_with_latest_conversion(super().get_queryset(request), "state")

    @admin.display(description="conversion state", ordering="latest_state")
    def conversion_state(self, item):
        return item.latest_state or "-"

    @admin.display(description="conversions")
    def conversions(self, item):
        count = item.conversions.count()
        if not count:
            return "-"
        url = reverse("admin:geoconvert_conversion_changelist")
        return format_html(
            '<a href="{}?item__id__exact={}">{} conversion(s)</a>', url, item.pk, count
        )


admin.site.unregister(TreeItem)
admin.site.register(TreeItem, ConvertibleItemAdmin)


@admin.register(ConversionBatch)
class ConversionBatchAdmin(admin.ModelAdmin):
    """Read-only, as conversions are: cancel and retry go through the services."""

    list_display = (
        "id",
        "folder",
        "owner",
        "state",
        "priority",
        "total",
        "skipped",
        "counts",
        "created_at",
        "finished_at",
    )
    list_filter = ("state", "priority", "created_at")
    search_fields = ("id", "folder__name", "owner__username")
    list_select_related = ("folder", "owner")
    date_hierarchy = "created_at"
    actions = ("cancel_selected", "retry_selected")
    readonly_fields = [f.name for f in ConversionBatch._meta.fields] + ["counts", "members_link"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_operate_permission(self, request):
        user = request.user
        return user.is_active and user.is_staff and user.has_perm("geoconvert.change_conversion")

    @admin.display(description="members by state")
    def counts(self, batch):
        summary = batch_summary(batch=batch)
        return ", ".join(f"{state} {n}" for state, n in summary["counts"].items() if n) or "-"

    @admin.display(description="members")
    def members_link(self, batch):
        url = reverse("admin:geoconvert_conversion_changelist")
        return format_html(
            '<a href="{}?batch__id__exact={}">{} conversions</a>',
            url,
            batch.pk,
            batch.conversions.count(),
        )

    def _apply(self, request, queryset, service, verb):
        _apply_each(self, request, queryset, lambda b: service(batch=b), verb, "batch(es)")

    @admin.action(description="Cancel the selected batches", permissions=["operate"])
    def cancel_selected(self, request, queryset):
        self._apply(request, queryset, batches.batch_cancel, "cancelled")

    @admin.action(
        description="Retry the failed members of the selected batches", permissions=["operate"]
    )
    def retry_selected(self, request, queryset):
        self._apply(request, queryset, batches.batch_retry, "retried")
