import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import StopUpload

from tagger import storage
from tagger.api.uploads import UploadLimitHandler
from tagger.errors import PayloadTooLarge
from tagger.models import TreeItem


def _stored_files(settings) -> list[str]:
    return [stored.name for stored in storage.stored_names("items/")]


def test_declared_oversized_upload_is_refused_before_it_is_stored(api, settings, tmp_path):
    settings.TAGGER_MAX_UPLOAD_BYTES = 1000
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 100  # anything read would go to a temp file
    before = _stored_files(settings)

    response = api.post(
        "/api/v1/tree-items/",
        {"name": "big.tif", "file": SimpleUploadedFile("big.tif", b"x" * 5000)},
        format="multipart",
    )
    assert response.status_code == 413
    body = response.json()
    assert body["code"] == "payload_too_large"
    assert "the limit is 1000 bytes" in body["message"]
    assert body["limit"] == 1000
    assert not TreeItem.objects.exists()
    assert _stored_files(settings) == before
    assert list(tmp_path.iterdir()) == []


def test_body_without_a_length_is_counted_and_stopped_at_the_limit(settings):
    """A body whose length is not declared (chunked) is cut off as it streams in."""
    settings.TAGGER_MAX_UPLOAD_BYTES = 1000
    handler = UploadLimitHandler()
    handler.handle_raw_input(io.BytesIO(), {}, None, b"boundary")
    assert handler.receive_data_chunk(b"x" * 600, 0) == b"x" * 600
    with pytest.raises(StopUpload) as stop:
        handler.receive_data_chunk(b"x" * 600, 600)
    # Stop reading at once; Django then closes (deletes) the partial temporary file.
    assert stop.value.connection_reset
    with pytest.raises(PayloadTooLarge):
        handler.upload_complete()
