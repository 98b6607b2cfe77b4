"""The convert endpoint is throttled per user (GEOCONVERT_CONVERT_RATE)."""

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile

from tagger.services import item_create
from tests.geoconvert.api.helpers import convert


@pytest.fixture(autouse=True)
def fresh_counts():
    cache.clear()
    yield
    cache.clear()


def _file(owner, name="a.tif"):
    return item_create(owner=owner, name=name, file=ContentFile(b"x" * 10))


def test_convert_beyond_the_rate_is_429_with_retry_after(
    api, other_api, user, other_user, settings
):
    settings.GEOCONVERT_CONVERT_RATE = "2/min"
    items = [_file(user, f"{n}.tif") for n in range(3)]

    assert convert(api, items[0].pk).status_code == 202
    assert convert(api, items[1].pk).status_code == 202
    refused = convert(api, items[2].pk)

    assert refused.status_code == 429
    body = refused.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == "throttled"
    assert "throttled" in body["message"].lower()
    assert 0 < int(refused["Retry-After"]) <= 60
    assert not items[2].conversions.exists()
    # Per user: someone else is not held back.
    assert convert(other_api, _file(other_user).pk).status_code == 202


def test_rate_comes_from_settings_at_request_time(api, user, settings):
    settings.GEOCONVERT_CONVERT_RATE = "1/min"
    assert convert(api, _file(user, "a.tif").pk).status_code == 202
    assert convert(api, _file(user, "b.tif").pk).status_code == 429
    settings.GEOCONVERT_CONVERT_RATE = "100/min"
    assert convert(api, _file(user, "c.tif").pk).status_code == 202


def test_only_calls_that_start_a_conversion_count(api, user, settings):
    settings.GEOCONVERT_CONVERT_RATE = "2/min"
    first = _file(user, "first.tif")
    started = convert(api, first.pk)
    assert started.status_code == 202
    # Repeats return the same task and start nothing: free, however many.
    for _ in range(5):
        again = convert(api, first.pk)
        assert again.status_code == 202
        assert again.json()["task_id"] == started.json()["task_id"]
    # Invalid requests start nothing either.
    for _ in range(3):
        assert convert(api, _file(user, "x.tif").pk, {"target_crs": "EPSG:0"}).status_code == 400
    folder = item_create(owner=user, name="folder")
    assert convert(api, folder.pk).status_code == 400
    # The second real start is within the rate; the third is not.
    assert convert(api, _file(user, "second.tif").pk).status_code == 202
    refused = convert(api, _file(user, "third.tif").pk)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0


def test_a_409_for_an_item_already_converted_does_not_count(api, user, settings):
    from tests.factories import GeoRasterFactory

    settings.GEOCONVERT_CONVERT_RATE = "1/min"
    converted = GeoRasterFactory(item__owner=user).item
    for _ in range(3):
        assert convert(api, converted.pk).status_code == 409
    assert convert(api, _file(user).pk).status_code == 202


def test_a_folder_batch_counts_once_and_only_if_it_starts_something(api, user, settings):
    settings.GEOCONVERT_CONVERT_RATE = "2/min"
    folder = item_create(owner=user, name="survey")
    for name in ("a.tif", "b.tif", "c.tif"):
        item_create(owner=user, name=name, parent=folder, file=ContentFile(b"x" * 10))

    first = convert(api, folder.pk)
    assert first.status_code == 202 and first.json()["total"] == 3
    # Every file is converting now: the batch starts nothing, however often it is asked.
    for _ in range(3):
        again = convert(api, folder.pk)
        assert again.status_code == 202 and again.json()["total"] == 0
    # The second start is within the rate; the third is not.
    assert convert(api, _file(user, "d.tif").pk).status_code == 202
    assert convert(api, _file(user, "e.tif").pk).status_code == 429
