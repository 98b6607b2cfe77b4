"""docker/nginx.conf never passes `/metrics` on: in a real nginx in front of a live Django,
the metrics Django serves to a loopback client are a 404 through the proxy."""

import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from tests.conftest import require
from tests.http import NGINX, conf_block, running_nginx
from tests.tagger.api.test_delivery import NGINX_CONF


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.django_db(transaction=True)
def test_nginx_answers_404_for_the_metrics(live_server, tmp_path):
    require(NGINX is not None, "nginx is not installed (Debian: apt-get install nginx)")
    conf = NGINX_CONF.read_text()
    upstream = urlsplit(live_server.url).netloc
    server_part = "\n".join(
        [
            conf_block(conf, "location = /metrics {"),
            conf_block(conf, "location = /metrics/ {"),
            f"location / {{ proxy_pass http://{upstream}; proxy_set_header Host $http_host; }}",
        ]
    )
    assert _get(f"{live_server.url}/metrics")[0] == 200  # Django serves its loopback client
    with running_nginx(tmp_path / "nginx", "", server_part) as port:
        for path in ("/metrics", "/metrics/", "/metrics?format=text", "//metrics"):
            status, body = _get(f"http://127.0.0.1:{port}{path}")
            assert status == 404, path
            assert b"tagger_" not in body, path
        # Everything else still reaches Django.
        assert _get(f"http://127.0.0.1:{port}/api/v1/tree-items/")[0] == 401
