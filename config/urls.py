from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path, re_path
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    re_path(r"^api/v1/schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^api/v1/docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    re_path(
        r"^api/v1/redoc/?$",
        SpectacularRedocView.as_view(url_name="schema", template_name="tagger/redoc.html"),
        name="redoc",
    ),
    path("api/v1/", include("config.api_router")),
    path("", include("workspace.urls")),
]


def _not_found(request, exception=None):
    """Unknown API paths answer in the API's error shape; other paths get Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "not_found", "message": "No such API endpoint."}, status=404)
    return page_not_found(request, exception)


handler404 = _not_found
