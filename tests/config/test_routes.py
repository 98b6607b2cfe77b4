"""Every API route, found by walking the URL resolver (so a new route is covered the day it
is added), refuses anonymous callers and hides one user's objects from another."""

import re
import uuid

import pytest
from django.core.files.base import ContentFile
from django.urls import URLPattern, URLResolver, get_resolver

from geoconvert.services.batches import batch_start
from geoconvert.services.conversions import conversion_start
from tagger.services import item_create
from webhooks.services.endpoints import webhook_endpoint_create, webhook_endpoint_test

# Open to anyone on purpose: getting a token, the API's description, the health check.
PUBLIC = {"api:token", "api:health", "schema", "docs", "redoc"}
METHODS = ("get", "post", "put", "patch", "delete")


def _walk(patterns, prefix="", namespace=""):
    for entry in patterns:
        regex = entry.pattern.regex.pattern
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, prefix + regex, ns)
        elif isinstance(entry, URLPattern):
            yield prefix + regex, f"{namespace}{entry.name}", entry.callback


def api_routes():
    """(name, regex, methods) of every route under /api/."""
    routes = []
    for regex, name, callback in _walk(get_resolver().url_patterns):
        path = regex.replace("^", "").replace("$", "").replace("\\Z", "")
        if not path.startswith("api/"):
            continue
        cls = getattr(callback, "cls", None)
        actions = getattr(callback, "actions", None)
        if actions:
            methods = [m for m in METHODS if m in actions]
        else:
            methods = [m for m in METHODS if hasattr(cls, m)]
        routes.append((name, path, methods))
    return routes


def _url(path: str, values: dict) -> str:
    def value(match):
        return str(values[match.group(1)])

    url = re.sub(r"\(\?P<(\w+)>[^)]*\)", value, path).replace("/?", "/").replace("\\", "")
    return "/" + url


@pytest.fixture
def owned(user):
    """A file with a queued conversion, a folder batch, and a webhook with a delivery,
    owned by `user`."""
    item = item_create(owner=user, name="a.tif", file=ContentFile(b"x" * 10))
    conversion, _ = conversion_start(item=item)
    folder = item_create(owner=user, name="maps")
    item_create(owner=user, name="b.tif", parent=folder, file=ContentFile(b"x" * 10))
    batch = batch_start(folder=folder)
    endpoint = webhook_endpoint_create(owner=user, url="https://hooks.example.org/")
    delivery = webhook_endpoint_test(endpoint=endpoint)
    return item, conversion, batch, endpoint, delivery


def _values_for(path: str, item_id, task_id, batch_id, webhook_id, delivery_id) -> dict:
    pk = item_id
    if path.startswith("api/v1/tasks"):
        pk = task_id
    elif path.startswith("api/v1/batches"):
        pk = batch_id
    elif path.startswith("api/v1/webhooks"):
        pk = webhook_id
    return {
        "pk": pk,
        "item_id": item_id,
        "delivery_id": delivery_id,
        **{"z": 0, "x": 0, "y": 0},
    }


def test_the_walk_finds_the_known_routes():
    names = {name for name, _, _ in api_routes()}
    assert {
        "api:tree-item-list",
        "api:tree-item-detail",
        "api:tree-item-download",
        "api:tree-item-download-link",
        "api:tile",
        "api:tile-2x",
        "api:tilejson",
        "api:thumbnail",
        "api:convert-to-geo-raster",
        "api:conversion-status",
        "api:task-list",
        "api:task-status",
        "api:task-cancel",
        "api:batch-list",
        "api:batch-detail",
        "api:batch-cancel",
        "api:batch-retry",
        "api:webhook-list",
        "api:webhook-detail",
        "api:webhook-rotate-secret",
        "api:webhook-test",
        "api:webhook-deliveries",
        "api:webhook-redeliver",
        "api:token",
        "schema",
    } <= names


def test_every_route_refuses_anonymous_callers(anon_api, owned):
    item, conversion, batch, endpoint, delivery = owned
    for name, path, methods in api_routes():
        if name in PUBLIC:
            continue
        ids = (item.pk, conversion.task_id, batch.pk, endpoint.pk, delivery.pk)
        url = _url(path, _values_for(path, *ids))
        for method in methods:
            response = getattr(anon_api, method)(url, {}, format="json")
            assert response.status_code == 401, (method, url, response.status_code)
            assert response.json()["code"] == "not_authenticated", (method, url)


@pytest.mark.parametrize("whose", ["foreign", "missing", "malformed"])
def test_every_object_route_hides_what_is_not_yours(other_api, owned, whose):
    item, conversion, batch, endpoint, delivery = owned
    ids = {
        "foreign": (item.pk, conversion.task_id, batch.pk, endpoint.pk, delivery.pk),
        "missing": (uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()),
        "malformed": ("not-a-uuid", "42", "x", "nope", "x"),
    }[whose]
    checked = 0
    for name, path, methods in api_routes():
        if name in PUBLIC or "(?P<" not in path:
            continue
        url = _url(path, _values_for(path, *ids))
        for method in methods:
            response = getattr(other_api, method)(url, {"name": "stolen"}, format="json")
            assert response.status_code == 404, (method, url, response.status_code)
            assert response.json()["code"] == "not_found", (method, url)
            checked += 1
    assert checked >= 12
    # Nothing changed for the owner.
    item.refresh_from_db()
    conversion.refresh_from_db()
    batch.refresh_from_db()
    endpoint.refresh_from_db()
    assert item.name == "a.tif" and conversion.state == "PENDING"
    assert batch.state == "PENDING" and batch.conversions.get().state == "PENDING"
    assert endpoint.url == "https://hooks.example.org/"
    assert delivery.event.deliveries.count() == 1  # nothing redelivered


def test_every_list_route_shows_only_your_own(other_api, owned):
    for name, path, methods in api_routes():
        if name in PUBLIC or "(?P<" in path or "get" not in methods:
            continue
        body = other_api.get(_url(path, {})).json()
        if "results" in body:
            assert body["results"] == [], path
