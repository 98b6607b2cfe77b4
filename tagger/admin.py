from django.contrib import admin
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils.html import format_html

from tagger import services
from tagger.models import GeoRaster, TreeItem

GEO_RASTER_FIELDS = ("file", *GeoRaster.METADATA_FIELDS, "created_at")


class LatestConversionStateFilter(admin.SimpleListFilter):
    title = "conversion state"
    parameter_name = "conversion_state"

    def lookups(self, request, model_admin):
        from geoconvert.models import Conversion

        return [("NONE", "Never converted"), *Conversion.State.choices]

    def queryset(self, request, queryset):
        if self.value() == "NONE":
            return queryset.filter(latest_state__isnull=True)
        if self.value():
            return queryset.filter(latest_state=self.value())
        return queryset


class GeoRasterInline(admin.StackedInline):
    model = GeoRaster
    verbose_name = "geo-raster metadata"
    verbose_name_plural = "geo-raster metadata"
    can_delete = False
    extra = 0
    fields = GEO_RASTER_FIELDS
    readonly_fields = GEO_RASTER_FIELDS

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(TreeItem)
class TreeItemAdmin(admin.ModelAdmin):
    """For inspection: items are created, moved and converted through the API. Deleting goes
    through the service, so the files go too."""

    list_display = ("name", "owner", "object_type", "size", "conversion_state", "created_at")
    list_filter = ("object_type", "owner", LatestConversionStateFilter)
    search_fields = ("name",)
    list_select_related = ("owner",)
    fields = (
        "id",
        "name",
        "owner",
        "parent",
        "object_type",
        "file",
        "size",
        "conversions",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    inlines = (GeoRasterInline,)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        from geoconvert.models import Conversion

        latest = Conversion.objects.filter(item=OuterRef("pk")).order_by("-created_at")
        return (
            super()
            .get_queryset(request)
            .annotate(latest_state=Subquery(latest.values("state")[:1]))
        )

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

    def delete_model(self, request, obj):
        services.item_delete(item=obj)

    def delete_queryset(self, request, queryset):
        for item in queryset:
            if TreeItem.objects.filter(pk=item.pk).exists():  # not gone with an ancestor
                services.item_delete(item=item)
