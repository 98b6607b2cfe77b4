"""`/metrics`: the Prometheus text format.

With TAGGER_METRICS_TOKEN set (production requires it) it answers only
`Authorization: Bearer <token>`; without one, only clients on the loopback interface
(`make run`). nginx never passes it on (docker/nginx.conf): Prometheus scrapes the backend
directly.
"""

import hmac
import ipaddress
import os

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from monitoring.collectors import ConversionCollector, InfrastructureCollector


class _ThisProcess:
    """The metrics this process holds (one API process: `make run`)."""

    def collect(self):
        return REGISTRY.collect()


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(ConversionCollector())
    registry.register(InfrastructureCollector())
    return registry


def _refusal(request) -> HttpResponse | None:
    token = settings.TAGGER_METRICS_TOKEN
    if not token:
        try:
            loopback = ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return None
        return HttpResponse(
            "Metrics are served to loopback clients only unless TAGGER_METRICS_TOKEN is set.\n",
            status=403,
            content_type="text/plain",
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        response = HttpResponse("Bearer token required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return HttpResponse("Wrong token.\n", status=403, content_type="text/plain")
    return None


@never_cache
@require_GET
def metrics(request):
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    # The format Prometheus asks for (OpenMetrics or the text format), as its client does.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(_registry()), content_type=content_type)
