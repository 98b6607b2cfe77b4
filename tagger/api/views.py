from pathlib import Path

from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from tagger import selectors, services
from tagger.api.filters import ItemFilter
from tagger.api.schema import ErrorOutput
from tagger.api.serializers import DownloadInput, ItemCreateInput, ItemOutput, ItemUpdateInput
from tagger.errors import NotFound


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
        parameters=[OpenApiParameter("variant", enum=["original", "geo_raster"])],
        responses={(200, "application/octet-stream"): bytes},
    )
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        item = self.get_object()
        variant = _validated(DownloadInput, request.query_params)["variant"]
        if variant == "geo_raster":
            geo_raster = getattr(item, "geo_raster", None)
            if item.object_type != item.ObjectType.GEO_RASTER_FILE or geo_raster is None:
                raise NotFound("This item has no geo-raster yet; convert it first.")
            path, filename = geo_raster.file.path, f"{Path(item.name).stem or 'raster'}.tif"
        else:
            if not item.file:
                raise NotFound("A folder has no file to download.")
            path, filename = item.file.path, item.name
        return FileResponse(open(path, "rb"), as_attachment=True, filename=filename)


def _validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
