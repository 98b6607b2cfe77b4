"""The workspace's pages without a browser: who may open them, and that everything they
load is among tagger's own static files (no CDN, nothing from the internet)."""

import json
import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from tests.factories import PASSWORD


@pytest.fixture
def signed_in(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_anonymous_visitors_are_sent_to_sign_in(db):
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_signing_in_leads_to_the_workspace_and_signing_out_back(db, user):
    client = Client()
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("path", ["/", "/login/"])
def test_the_pages_load_only_our_own_static_files(db, signed_in, path, settings):
    client = signed_in if path == "/" else Client()
    html = client.get(path).content.decode()
    assets = re.findall(r"""<(?:script|link)[^>]+(?:src|href)=["']([^"']+)["']""", html)
    static = "/" + settings.STATIC_URL.lstrip("/")
    assert assets
    for asset in assets:
        if asset.startswith("data:"):
            continue
        assert asset.startswith(static), f"{path} loads {asset}"
        assert finders.find(asset.removeprefix(static)), f"{asset} is not among the static files"


def test_the_scripts_import_only_their_neighbours():
    for name in ("workspace.js", "api.js", "conversions.js", "map.js"):
        source = open(finders.find(f"workspace/{name}")).read()
        for target in re.findall(r"""from\s+["']([^"']+)["']""", source):
            assert target.startswith("./"), f"{name} imports {target}"


def test_the_basemap_is_a_setting_and_empty_by_default(db, signed_in, settings):
    def config() -> dict:
        html = signed_in.get("/").content.decode()
        found = re.search(
            r'<script id="workspace-config" type="application/json">(.*?)</script>', html
        )
        return json.loads(found.group(1))

    assert config()["basemapUrl"] == ""
    settings.TAGGER_MAP_BASEMAP_URL = "https://tiles.example.org/{z}/{x}/{y}.png"
    assert config()["basemapUrl"] == "https://tiles.example.org/{z}/{x}/{y}.png"
