import pytest

from tests.webhooks.receiver import Receiver


@pytest.fixture
def receiver():
    """A real HTTP receiver on 127.0.0.1 (the test settings allow loopback URLs)."""
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def register(api):
    """register(url, events=None, **fields) -> the 201 body (with its secret)."""

    def post(url, events=None, **fields):
        body = {"url": url, **fields}
        if events is not None:
            body["events"] = events
        response = api.post("/api/v1/webhooks/", body, format="json")
        assert response.status_code == 201, response.content
        return response.json()

    return post
