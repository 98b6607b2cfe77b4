from django.urls import re_path
from rest_framework.routers import DefaultRouter

from geoconvert.api.events import EventLinkView, EventsView, TaskEventsView
from geoconvert.api.maps import RetinaTileView, ThumbnailView, TileJSONView, TileView
from geoconvert.api.views import (
    BatchViewSet,
    ConvertItemView,
    HealthView,
    ItemConversionStatusView,
    TaskViewSet,
)
from tagger.api.auth import TokenView
from tagger.api.views import TreeItemViewSet
from webhooks.api.views import WebhookViewSet


class OptionalSlashRouter(DefaultRouter):
    """Every route answers with and without a trailing slash, without redirecting."""

    include_format_suffixes = False

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("tree-items", TreeItemViewSet, basename="tree-item")
router.register("tasks", TaskViewSet, basename="task")
router.register("batches", BatchViewSet, basename="batch")
router.register("webhooks", WebhookViewSet, basename="webhook")

app_name = "api"
urlpatterns = [
    re_path(r"^auth/token/?$", TokenView.as_view(), name="token"),
    re_path(r"^health/?$", HealthView.as_view(), name="health"),
    re_path(
        r"^tree-items/(?P<item_id>[^/.]+)/convert-to-geo-raster/?$",
        ConvertItemView.as_view(),
        name="convert-to-geo-raster",
    ),
    re_path(
        r"^tree-items/(?P<item_id>[^/.]+)/conversion-status/?$",
        ItemConversionStatusView.as_view(),
        name="conversion-status",
    ),
    re_path(
        r"^tree-items/(?P<item_id>[^/.]+)/tiles/(?P<z>\d+)/(?P<x>\d+)/(?P<y>\d+)\.png$",
        TileView.as_view(),
        name="tile",
    ),
    re_path(
        r"^tree-items/(?P<item_id>[^/.]+)/tiles/(?P<z>\d+)/(?P<x>\d+)/(?P<y>\d+)@2x\.png$",
        RetinaTileView.as_view(),
        name="tile-2x",
    ),
    re_path(
        r"^tree-items/(?P<item_id>[^/.]+)/tilejson\.json$", TileJSONView.as_view(), name="tilejson"
    ),
    re_path(
        r"^tree-items/(?P<item_id>[^/.]+)/thumbnail\.png$",
        ThumbnailView.as_view(),
        name="thumbnail",
    ),
    re_path(r"^events/?$", EventsView.as_view(), name="events"),
    re_path(r"^events/link/?$", EventLinkView.as_view(), name="events-link"),
    re_path(r"^tasks/(?P<pk>[^/.]+)/events/?$", TaskEventsView.as_view(), name="task-events"),
    *router.urls,
]
