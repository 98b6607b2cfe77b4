from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tagger import links
from tagger.models import GeoRaster, TreeItem


class GeoRasterOutput(serializers.ModelSerializer):
    class Meta:
        model = GeoRaster
        # `statistics`: per band, once the follow-up task has computed them (else null).
        fields = (*GeoRaster.METADATA_FIELDS, "sha256", "statistics")


class ItemOutput(serializers.ModelSerializer):
    geo_raster = serializers.SerializerMethodField()

    class Meta:
        model = TreeItem
        fields = (
            "id",
            "name",
            "parent",
            "object_type",
            "size",
            "created_at",
            "updated_at",
            "geo_raster",
        )

    @extend_schema_field(GeoRasterOutput(allow_null=True))
    def get_geo_raster(self, item: TreeItem) -> dict | None:
        # Present once the COG is in place and its metadata saved.
        if item.object_type != TreeItem.ObjectType.GEO_RASTER_FILE:
            return None
        geo_raster = getattr(item, "geo_raster", None)
        if geo_raster is None:
            return None
        return {
            **geo_raster.as_metadata(),
            "sha256": geo_raster.sha256,
            "statistics": geo_raster.statistics,
        }


class ItemCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=1024, required=False, trim_whitespace=False)
    parent = serializers.UUIDField(required=False, allow_null=True)
    file = serializers.FileField(required=False, allow_empty_file=True, use_url=False)

    def validate(self, attrs):
        if not attrs.get("name"):
            if attrs.get("file") is None:
                raise serializers.ValidationError({"name": ["This field is required."]})
            attrs["name"] = attrs["file"].name
        return attrs


class ItemUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=1024, required=False, trim_whitespace=False)
    parent = serializers.UUIDField(required=False, allow_null=True)


class DownloadInput(serializers.Serializer):
    variant = serializers.ChoiceField(choices=("original", "geo_raster"), default="original")


class DownloadLinkInput(serializers.Serializer):
    variant = serializers.ChoiceField(choices=("original", "geo_raster"), default="original")
    expires_in = serializers.IntegerField(
        min_value=1, max_value=links.MAX_SECONDS, default=links.DEFAULT_SECONDS
    )


class DownloadLinkOutput(serializers.Serializer):
    url = serializers.URLField()
    expires_at = serializers.DateTimeField()
