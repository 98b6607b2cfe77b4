"""The browser workspace: one page, whose script works through the REST API with the
session cookie. No business logic here: the page is a client of the API like any other."""

from django.conf import settings
from django.contrib.auth.mixins import LoginRequiredMixin
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.generic import TemplateView


@method_decorator(ensure_csrf_cookie, name="dispatch")
class WorkspaceView(LoginRequiredMixin, TemplateView):
    template_name = "workspace/index.html"

    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            # What the script needs to know, as JSON (json_script): never in the markup.
            "workspace_config": {
                "api": "/api/v1",
                "maxUploadBytes": settings.TAGGER_MAX_UPLOAD_BYTES,
                "basemapUrl": settings.TAGGER_MAP_BASEMAP_URL,
                "basemapAttribution": settings.TAGGER_MAP_BASEMAP_ATTRIBUTION,
            },
        }
