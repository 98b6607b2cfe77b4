"""HTTP requests by route, method and status, counted in every API process.

Under gunicorn (several worker processes) prometheus-client's multiprocess mode adds the
processes' counts up: PROMETHEUS_MULTIPROC_DIR is set by config/gunicorn.py. The route
label is the URL pattern's name (`api:tree-item-detail`), never the path, so ids do not
become series; a path that matches no route is `unmatched`.
"""

import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from prometheus_client import Counter, Histogram

METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
# Until the response's headers: an event stream's hours open are not its latency.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter(
    "tagger_http_requests",
    "HTTP requests answered, by route, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "tagger_http_request_duration_seconds",
    "Seconds until the response's headers, by route and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)


def route_of(request) -> str:
    match = getattr(request, "resolver_match", None)
    return (match.view_name or "unnamed") if match else "unmatched"


def _observe(request, response, started: float) -> None:
    route = route_of(request)
    method = request.method if request.method in METHODS else "other"
    REQUESTS.labels(route, method, str(response.status_code)).inc()
    LATENCY.labels(route, method).observe(time.perf_counter() - started)


class HttpMetricsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        started = time.perf_counter()
        response = self.get_response(request)
        _observe(request, response, started)
        return response

    async def _acall(self, request):
        started = time.perf_counter()
        response = await self.get_response(request)
        _observe(request, response, started)
        return response
