"""Looking at a COG: Web Mercator map tiles, the TileJSON document a browser map starts
from, and the thumbnail. Tiles and thumbnails are rendered by geoconvert.raster.render."""

import contextlib

from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import get_conditional_response
from django.utils.http import quote_etag
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.authentication import TokenAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from geoconvert.api.serializers import TileJSONInput, TileJSONOutput
from geoconvert.raster import RasterError, is_complex, render
from geoconvert.services.engine import storage_env
from tagger import links
from tagger.api.auth import LINK_AUTHENTICATION
from tagger.api.schema import ErrorOutput
from tagger.errors import NotFound, Unprocessable
from tagger.models import GeoRaster
from tagger.selectors import geo_raster_get
from tagger.storage import file_read, gdal_name

# Part of every tile's and thumbnail's ETag: raise it when rendering changes, so clients
# holding a cached image fetch the new one.
RENDER_VERSION = 2
MAX_ZOOM = 30
# Validators only: a client keeps the image and asks again with If-None-Match, which costs
# a 304 and no raster read; a reconversion (new hash) changes every ETag at once.
CACHE_CONTROL = "private, no-cache"
PNG = "image/png"

# The engine knows no settings: the views that draw size its pool of open COGs (here, not
# in the app's ready(): rio-tiler's import would lengthen every process's start-up).
render.DATASETS.max_idle = settings.TAGGER_TILE_OPEN_DATASETS
if not settings.TAGGER_TILE_OVERVIEW_READS:
    render.OVERVIEW_OVERSAMPLING = 0


TILE_SCHEMA = {
    "parameters": [
        OpenApiParameter("z", OpenApiTypes.INT, OpenApiParameter.PATH),
        OpenApiParameter("x", OpenApiTypes.INT, OpenApiParameter.PATH),
        OpenApiParameter("y", OpenApiTypes.INT, OpenApiParameter.PATH),
        OpenApiParameter("token", description="A TileJSON document's tile token."),
    ],
    "responses": {
        (200, PNG): OpenApiTypes.BINARY,
        204: OpenApiResponse(description="The tile is outside the raster."),
        304: OpenApiResponse(description="Not modified (If-None-Match)."),
        403: OpenApiResponse(ErrorOutput, description="A tile token altered or expired."),
        422: OpenApiResponse(ErrorOutput, description="The raster cannot be drawn."),
    },
}


class TileView(APIView):
    authentication_classes = LINK_AUTHENTICATION
    scale = 1

    @extend_schema(**TILE_SCHEMA, operation_id="tree_items_tiles_retrieve")
    def get(self, request, item_id, z, x, y):
        """A 256 px PNG tile of the WebMercatorQuad grid."""
        return self.tile(request, item_id, z, x, y)

    def tile(self, request, item_id, z, x, y):
        geo_raster = geo_raster_get(user=request.user, item_id=item_id)
        links.grant_check(
            request.auth,
            item_id=geo_raster.item_id,
            scope=links.Scope.TILES,
            sha256=geo_raster.sha256,
        )
        z, x, y = int(z), int(x), int(y)
        if z > MAX_ZOOM or x >= 2**z or y >= 2**z:
            raise NotFound(f"There is no tile {z}/{x}/{y}: at zoom {z}, x and y are below {2**z}.")
        rescaled = "s" if geo_raster.statistics else "n"
        tag = f"{geo_raster.sha256[:16]}-{rescaled}{RENDER_VERSION}-{z}-{x}-{y}@{self.scale}"
        headers = {"ETag": quote_etag(tag), "Cache-Control": CACHE_CONTROL}
        cached = get_conditional_response(request, etag=headers["ETag"])
        if cached is not None:
            return _with_headers(cached, headers)
        headers |= _proxy_cache_headers(request)
        with _drawing(), storage_env():
            png = render.tile_png(
                gdal_name(geo_raster.file.name),
                x,
                y,
                z,
                statistics=geo_raster.statistics,
                tilesize=256 * self.scale,
                version=geo_raster.sha256,
            )
        if png is None:
            return HttpResponse(status=204, headers=headers)
        return HttpResponse(png, content_type=PNG, headers=headers)


class RetinaTileView(TileView):
    scale = 2

    @extend_schema(**TILE_SCHEMA, operation_id="tree_items_tiles_2x_retrieve")
    def get(self, request, item_id, z, x, y):
        """The same tile at 512 px."""
        return self.tile(request, item_id, z, x, y)


class TileJSONView(APIView):
    @extend_schema(
        parameters=[TileJSONInput],
        responses={
            200: TileJSONOutput,
            422: OpenApiResponse(ErrorOutput, description="The raster cannot be drawn."),
        },
    )
    def get(self, request, item_id):
        """TileJSON 3.0.0 for a browser map: bounds, center, zoom range from the COG, and a
        tile URL template that carries a signed tile token (maps send no Authorization)."""
        geo_raster = geo_raster_get(user=request.user, item_id=item_id)
        query = TileJSONInput(data=request.query_params)
        query.is_valid(raise_exception=True)
        with _drawing(), storage_env():
            info = render.tile_info(gdal_name(geo_raster.file.name), version=geo_raster.sha256)
        return Response(
            TileJSONOutput(
                {
                    "tilejson": "3.0.0",
                    "name": geo_raster.item.name,
                    "scheme": "xyz",
                    "tiles": [_tile_template(request, geo_raster, query.validated_data["scale"])],
                    **info,
                }
            ).data
        )


class ThumbnailView(APIView):
    @extend_schema(
        responses={
            (200, PNG): OpenApiTypes.BINARY,
            304: OpenApiResponse(description="Not modified (If-None-Match)."),
            404: OpenApiResponse(ErrorOutput, description="No such item, or not ready yet."),
        }
    )
    def get(self, request, item_id):
        """A PNG preview, long side at most 512 px, made after the conversion."""
        geo_raster = geo_raster_get(user=request.user, item_id=item_id)
        if not geo_raster.thumbnail and any(is_complex(d) for d in geo_raster.dtypes):
            raise NotFound(
                "A raster of complex numbers has no thumbnail: pictures need real values.",
                code="thumbnail_not_drawable",
            )
        if not geo_raster.thumbnail:
            raise NotFound(
                "The thumbnail is not ready yet: it is made shortly after the conversion.",
                code="thumbnail_not_ready",
            )
        tag = f"{geo_raster.sha256[:16]}-thumbnail{RENDER_VERSION}"
        headers = {"ETag": quote_etag(tag), "Cache-Control": CACHE_CONTROL}
        cached = get_conditional_response(request, etag=headers["ETag"])
        if cached is not None:
            return _with_headers(cached, headers)
        png = file_read(geo_raster.thumbnail.name)
        if png is None:
            raise NotFound("The thumbnail is missing from storage.", code="thumbnail_not_ready")
        return _with_headers(HttpResponse(png, content_type=PNG), headers)


@contextlib.contextmanager
def _drawing():
    """What the engine cannot draw (complex numbers, a COG that cannot be read), in the error
    shape: the engine's message says why."""
    try:
        yield
    except RasterError as exc:
        raise Unprocessable(str(exc), code="cannot_draw") from None


def _tile_template(request, geo_raster: GeoRaster, scale: int) -> str:
    expires_at = links.grant_expiry(settings.TAGGER_TILE_LINK_SECONDS)
    token = links.grant_token(
        item_id=geo_raster.item_id,
        scope=links.Scope.TILES,
        sha256=geo_raster.sha256,
        expires_at=expires_at,
    )
    name = "api:tile-2x" if scale == 2 else "api:tile"
    path = reverse(name, kwargs={"item_id": geo_raster.item_id, "z": 1, "x": 2, "y": 3})
    path = path.replace("/1/2/3", "/{z}/{x}/{y}")
    # The braces stay literal: map libraries substitute them.
    return f"{request.build_absolute_uri('/').rstrip('/')}{path}?token={token}"


def _proxy_cache_headers(request) -> dict:
    """`X-Accel-Expires` for nginx's tile cache (TAGGER_TILE_PROXY_CACHE_SECONDS), whose key
    is the URL and the Authorization header: so only for a request authenticated by either
    (a tile token, an API token), never by a session cookie, and never past a token's
    expiry. nginx takes the header off before the response leaves it."""
    seconds = settings.TAGGER_TILE_PROXY_CACHE_SECONDS
    if isinstance(request.auth, links.Grant):
        seconds = min(seconds, int((request.auth.expires_at - timezone.now()).total_seconds()))
    elif not isinstance(request.successful_authenticator, TokenAuthentication):
        return {}
    return {"X-Accel-Expires": str(seconds)} if seconds > 0 else {}


def _with_headers(response, headers: dict):
    for name, value in headers.items():
        response[name] = value
    return response
