import logging
import mimetypes
from pathlib import Path
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from tagger import links, selectors, services
from tagger.api.auth import LINK_AUTHENTICATION
from tagger.api.delivery import StoredFile, file_redirect, file_response
from tagger.api.filters import ItemFilter
from tagger.api.schema import ErrorOutput
from tagger.api.serializers import (
    DownloadInput,
    DownloadLinkInput,
    DownloadLinkOutput,
    ItemCreateInput,
    ItemOutput,
    ItemUpdateInput,
)
from tagger.errors import NotFound
from tagger.models import TreeItem
from tagger.storage import is_remote, local_path, presigned_url

logger = logging.getLogger(__name__)

# The media type of a Cloud-Optimized GeoTIFF (OGC 21-026).
COG_CONTENT_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


class TreeItemViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The caller's tree of folders and files."""

    serializer_class = ItemOutput
    filterset_class = ItemFilter
    parser_classes = (MultiPartParser, FormParser, JSONParser)

    def get_queryset(self):
        return selectors.item_list(user=self.request.user)

    def get_object(self):
        return selectors.item_get(user=self.request.user, item_id=self.kwargs["pk"])

    def _parent(self, parent_id):
        if parent_id is None:
            return None
        return selectors.item_get(user=self.request.user, item_id=parent_id)

    @extend_schema(
        request=ItemCreateInput,
        responses={
            201: ItemOutput,
            404: OpenApiResponse(ErrorOutput, description="The parent folder is not found."),
            413: OpenApiResponse(ErrorOutput, description="The upload is over the size limit."),
        },
    )
    def create(self, request):
        data = _validated(ItemCreateInput, request.data)
        item = services.item_create(
            owner=request.user,
            name=data["name"],
            parent=self._parent(data.get("parent")),
            file=data.get("file"),
        )
        return Response(ItemOutput(item).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ItemUpdateInput, responses=ItemOutput)
    def partial_update(self, request, pk=None):
        item = self.get_object()
        data = _validated(ItemUpdateInput, request.data, partial=True)
        if "parent" in data:
            data["parent"] = self._parent(data["parent"])
        item = services.item_update(item=item, data=data)
        return Response(ItemOutput(item).data)

    @extend_schema(request=ItemUpdateInput, responses=ItemOutput)
    def update(self, request, pk=None):
        return self.partial_update(request, pk)

    def destroy(self, request, pk=None):
        services.item_delete(item=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[
            OpenApiParameter("variant", enum=["original", "geo_raster"]),
            OpenApiParameter("token", description="A signed link's token, instead of credentials."),
        ],
        responses={
            (200, "application/octet-stream"): bytes,
            (206, "application/octet-stream"): bytes,
            302: OpenApiResponse(
                description="On S3 storage: the store's presigned URL for the file, in Location."
            ),
            304: OpenApiResponse(description="Not modified (If-None-Match)."),
            403: OpenApiResponse(ErrorOutput, description="A signed link altered or expired."),
            412: OpenApiResponse(description="A precondition (If-Match) failed."),
            416: OpenApiResponse(ErrorOutput, description="No requested range is in the file."),
        },
    )
    @action(detail=True, methods=["get"], authentication_classes=LINK_AUTHENTICATION)
    def download(self, request, pk=None):
        """The original or the COG, with HTTP ranges and validators (GET and HEAD)."""
        item = self.get_object()
        variant = _validated(DownloadInput, request.query_params)["variant"]
        stored = _stored_file(item, variant)
        links.grant_check(request.auth, item_id=item.pk, scope=variant, sha256=stored.etag)
        if stored.path is None and settings.TAGGER_S3_DELIVERY == "redirect":
            url = presigned_url(
                stored.name,
                method=request.method,
                filename=stored.filename,
                content_type=stored.content_type,
                seconds=settings.TAGGER_S3_PRESIGN_SECONDS,
            )
            return file_redirect(request, stored, url)
        prefix = settings.TAGGER_ACCEL_REDIRECT_PREFIX if stored.path is not None else None
        return file_response(request, stored, accel_prefix=prefix)

    @extend_schema(
        request=DownloadLinkInput,
        responses={
            201: DownloadLinkOutput,
            404: OpenApiResponse(ErrorOutput, description="No such item, or no such file yet."),
        },
    )
    @action(detail=True, methods=["post"], url_path="download-link")
    def download_link(self, request, pk=None):
        """A URL that downloads the file without credentials until it expires or the file
        changes."""
        item = self.get_object()
        data = _validated(DownloadLinkInput, request.data)
        stored = _stored_file(item, data["variant"])
        expires_at = links.grant_expiry(data["expires_in"])
        token = links.grant_token(
            item_id=item.pk, scope=data["variant"], sha256=stored.etag, expires_at=expires_at
        )
        query = urlencode({"variant": data["variant"], "token": token})
        url = request.build_absolute_uri(reverse("api:tree-item-download", args=[item.pk]))
        output = DownloadLinkOutput({"url": f"{url}?{query}", "expires_at": expires_at})
        return Response(output.data, status=status.HTTP_201_CREATED)


def _stored_file(item: TreeItem, variant: str) -> StoredFile:
    """The file a download of `variant` sends; 404 when the item has none."""
    if variant == "geo_raster":
        geo_raster = getattr(item, "geo_raster", None)
        if item.object_type != item.ObjectType.GEO_RASTER_FILE or geo_raster is None:
            raise NotFound("This item has no geo-raster yet; convert it first.")
        name, etag = geo_raster.file.name, geo_raster.sha256
        last_modified = geo_raster.stored_at or geo_raster.created_at
        content_type, filename = COG_CONTENT_TYPE, f"{Path(item.name).stem or 'raster'}.tif"
        recorded_size = geo_raster.size_bytes
    else:
        if not item.file:
            raise NotFound("A folder has no file to download.")
        name, etag, last_modified = item.file.name, item.file_sha256, item.created_at
        content_type = mimetypes.guess_type(item.name)[0] or "application/octet-stream"
        filename = item.name
        recorded_size = item.size
    if is_remote():
        # The size recorded when the file was stored: no request to the store here.
        path, size = None, recorded_size
    else:
        path = local_path(name)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            logger.error("The %s file of item %s is missing: %s", variant, item.pk, path)
            raise NotFound("The file of this item is missing from storage.") from None
    return StoredFile(
        path=path,
        name=name,
        size=size,
        etag=etag,
        last_modified=last_modified,
        content_type=content_type,
        filename=filename,
    )


def _validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
