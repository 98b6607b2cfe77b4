"""The API docs pages work offline: Swagger UI and ReDoc come from our own static files
(drf-spectacular-sidecar), nothing from a CDN."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client


@pytest.mark.parametrize("path", ["/api/v1/docs/", "/api/v1/redoc/"])
def test_the_docs_pages_load_only_our_own_static_files(db, path, settings):
    response = Client().get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    scripts = [a for a in assets if a.endswith(".js")]
    assert scripts, "the page loads its UI from script files"
    for asset in assets:
        assert not re.match(r"^(https?:)?//", asset), f"{path} fetches {asset} from the network"
    static = "/" + settings.STATIC_URL.lstrip("/")
    for asset in scripts:
        assert asset.startswith(static), asset
        found = finders.find(asset.removeprefix(static))
        assert found, f"{asset} is not among the static files"
    # The schema the UI loads is our own route.
    assert "/api/v1/schema" in html
