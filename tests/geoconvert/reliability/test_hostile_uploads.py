"""Hostile and broken uploads through the API and a real worker.

Each one must end FAILURE with a message a person can act on, show no byte of any file in any
response, open no network connection, and leave the worker alive.
"""

import socket
from pathlib import Path

import pytest
from django.conf import settings

from tagger.models import TreeItem
from tests import rasters
from tests.geoconvert.api.helpers import convert, upload, wait_for_task
from tests.geoconvert.reliability.conftest import repeat
from tests.storage import folder_names, stored_sha256

pytestmark = pytest.mark.usefixtures("live_worker")

PASSWD_LINE = Path("/etc/passwd").read_text().splitlines()[0]  # e.g. "root:x:0:0:root:..."


@pytest.fixture
def listener():
    """A local TCP port nobody but a misbehaving GDAL would connect to."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def _connections(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def _hostile(kind: str, folder: Path, port: int) -> Path:
    makers = {
        "vrt-etc-passwd": lambda: rasters.vrt_referencing(folder / "a.vrt", "/etc/passwd"),
        "vrt-etc-passwd-renamed-tif": lambda: rasters.vrt_referencing(
            folder / "a.tif", "/etc/passwd"
        ),
        "vrt-vsicurl": lambda: rasters.vrt_referencing(
            folder / "b.tif", f"/vsicurl/http://127.0.0.1:{port}/secret.tif"
        ),
        "huge-header-tiff": lambda: rasters.huge_header_tiff(folder / "huge.tif"),
        "truncated-tiff": lambda: rasters.truncated_tiff(folder / "cut.tif"),
        "random-bytes": lambda: rasters.random_bytes(folder / "noise.tif"),
        "empty-file": lambda: rasters.empty_file(folder / "empty.tif"),
        "text-file": lambda: rasters.text_file(folder / "notes.tif"),
        "zip": lambda: rasters.zip_file(folder / "archive.zip"),
    }
    return makers[kind]()


HOSTILE = [
    "vrt-etc-passwd",
    "vrt-etc-passwd-renamed-tif",
    "vrt-vsicurl",
    "huge-header-tiff",
    "truncated-tiff",
    "random-bytes",
    "empty-file",
    "text-file",
    "zip",
]


@repeat
@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_upload_fails_cleanly(api, tmp_path, listener, live_worker, kind, run):
    src = _hostile(kind, tmp_path, listener.getsockname()[1])
    item = upload(api, src)
    stored = TreeItem.objects.get(pk=item["id"]).file.name
    digest = stored_sha256(stored)

    accepted = convert(api, item["id"])
    assert accepted.status_code == 202
    task_id = accepted.json()["task_id"]
    final, _ = wait_for_task(api, task_id)

    assert final["state"] == "FAILURE"
    assert final["result"] is None
    error = final["error"]
    assert error and error.endswith(".") and len(error) > 10
    responses = [
        final,
        api.get(f"/api/v1/tree-items/{item['id']}/conversion-status").json(),
        api.get("/api/v1/tasks/").json(),
        api.get(f"/api/v1/tree-items/{item['id']}").json(),
    ]
    text = repr(responses)
    assert PASSWD_LINE not in text and "root:" not in text
    assert str(settings.MEDIA_ROOT) not in text and "/etc/passwd" not in text
    if src.stat().st_size:
        # No fragment of the upload itself comes back either (only its name, which is data).
        head = src.read_bytes()[:64].decode("latin-1")
        assert head not in text

    assert _connections(listener) == 0, "GDAL must make no network connection"
    assert TreeItem.objects.get(pk=item["id"]).object_type == TreeItem.ObjectType.FILE
    assert folder_names(str(Path(stored).parent)) == ["original"]
    assert stored_sha256(stored) == digest
    assert live_worker.ping(), "the worker survives"


def test_messages_say_what_is_wrong(api, tmp_path, listener, live_worker):
    """The message names the problem, so the user knows what to do."""
    expected = {
        "vrt-etc-passwd-renamed-tif": "not a raster tagger can read",
        "huge-header-tiff": "1,000,000 x 1,000,000",
        "truncated-tiff": "truncated or corrupt",
        "empty-file": "The file is empty.",
        "zip": "zip archive",
    }
    for kind, words in expected.items():
        item = upload(api, _hostile(kind, tmp_path, listener.getsockname()[1]))
        final, _ = wait_for_task(api, convert(api, item["id"]).json()["task_id"])
        assert words in final["error"], (kind, final["error"])
