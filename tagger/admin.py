from django.contrib import admin
from django.db.models import OuterRef, Subquery

from tagger.models import GeoRaster, TreeItem


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
    can_delete = False
    extra = 0
    readonly_fields = (
        "file",
        "crs",
        "bounds",
        "bounds_wgs84",
        "width",
        "height",
        "count",
        "dtypes",
        "nodata",
        "resolution",
        "overviews",
        "compression",
        "size_bytes",
        "created_at",
    )

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(TreeItem)
class TreeItemAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "object_type", "size", "conversion_state", "created_at")
    list_filter = ("object_type", "owner", LatestConversionStateFilter)
    search_fields = ("name",)
    list_select_related = ("owner",)
    raw_id_fields = ("parent", "owner")
    readonly_fields = ("id", "object_type", "file", "size", "created_at", "updated_at")
    inlines = (GeoRasterInline,)

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
