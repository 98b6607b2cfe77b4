from django.contrib import admin

from tagger import services
from tagger.models import GeoRaster, TreeItem

GEO_RASTER_FIELDS = ("file", *GeoRaster.METADATA_FIELDS, "created_at")


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
    through the service, so the files go too. (geoconvert.admin adds the conversions.)"""

    list_display = ("name", "owner", "object_type", "size", "created_at")
    list_filter = ("object_type", "owner")
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
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    inlines = (GeoRasterInline,)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        services.item_delete(item=obj)

    def delete_queryset(self, request, queryset):
        for item in queryset:
            if TreeItem.objects.filter(pk=item.pk).exists():  # not gone with an ancestor
                services.item_delete(item=item)
