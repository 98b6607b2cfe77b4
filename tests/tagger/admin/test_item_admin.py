"""The items admin as a logged-in staff user: list, filters, search, the item page with its
read-only geo-raster metadata, and deletion through the service."""

from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from geoconvert.models import Conversion
from geoconvert.services.conversions import conversion_start
from tagger.models import TreeItem
from tagger.services import item_create
from tests.factories import GeoRasterFactory, UserFactory
from tests.storage import folder_names

CHANGELIST = "/admin/tagger/treeitem/"


@pytest.fixture
def staff_client(client, db):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def tree(user, other_user):
    folder = item_create(owner=user, name="maps")
    plain = item_create(owner=user, name="plain.tif", parent=folder, file=ContentFile(b"x" * 7))
    failed = item_create(owner=other_user, name="failed.tif", file=ContentFile(b"y" * 3))
    conversion, _ = conversion_start(item=failed)
    Conversion.objects.filter(pk=conversion.pk).update(state="FAILURE", finished_at=timezone.now())
    converted = GeoRasterFactory(
        item__owner=user,
        item__name="dem.tif",
        item__content=b"z" * 5,
        file="items/x/geo_raster.tif",
    ).item
    return {"folder": folder, "plain": plain, "failed": failed, "converted": converted}


def _names(response) -> set[str]:
    return {item.name for item in response.context["cl"].result_list}


def test_list_columns(staff_client, tree, user):
    page = staff_client.get(CHANGELIST).content.decode()
    for text in (
        "maps",
        "plain.tif",
        "failed.tif",
        "dem.tif",
        user.username,
        "Geo-raster file",
        "FAILURE",
    ):
        assert text in page


def test_filters_by_object_type_owner_and_conversion_state(staff_client, tree, other_user):
    assert _names(staff_client.get(CHANGELIST, {"object_type__exact": "folder"})) == {"maps"}
    assert _names(staff_client.get(CHANGELIST, {"owner__id__exact": other_user.pk})) == {
        "failed.tif"
    }
    assert _names(staff_client.get(CHANGELIST, {"conversion_state": "FAILURE"})) == {"failed.tif"}
    assert _names(staff_client.get(CHANGELIST, {"conversion_state": "NONE"})) == {
        "maps",
        "plain.tif",
        "dem.tif",
    }


def test_search_by_name(staff_client, tree):
    assert _names(staff_client.get(CHANGELIST, {"q": "plain"})) == {"plain.tif"}


def test_item_page_shows_geo_raster_metadata_read_only(staff_client, tree):
    item = tree["converted"]
    response = staff_client.get(f"{CHANGELIST}{item.pk}/change/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "Geo-raster metadata" in page
    for text in ("EPSG:32633", "15.0, 36.1, 15.01, 36.11", "float32", "123456", "deflate"):
        assert text in page, text
    # Read-only: no form inputs for the metadata.
    assert 'name="geo_raster-0-crs"' not in page
    assert 'name="name"' not in page


def test_item_page_links_to_its_conversions(staff_client, tree):
    item = tree["failed"]
    page = staff_client.get(f"{CHANGELIST}{item.pk}/change/").content.decode()
    link = f"/admin/geoconvert/conversion/?item__id__exact={item.pk}"
    assert link in page
    listing = staff_client.get(link)
    assert listing.status_code == 200
    assert [c.item_id for c in listing.context["cl"].result_list] == [item.pk]


def test_delete_goes_through_the_service_and_removes_files(
    staff_client, tree, django_capture_on_commit_callbacks
):
    folder, plain = tree["folder"], tree["plain"]
    directory = str(Path(plain.file.name).parent)
    assert folder_names(directory)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(f"{CHANGELIST}{folder.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not TreeItem.objects.filter(pk__in=[folder.pk, plain.pk]).exists()
    assert folder_names(directory) == []


def test_bulk_delete_of_a_folder_and_its_child(
    staff_client, tree, django_capture_on_commit_callbacks
):
    folder, plain = tree["folder"], tree["plain"]
    directory = str(Path(plain.file.name).parent)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            CHANGELIST,
            {"action": "delete_selected", "_selected_action": [folder.pk, plain.pk],
             "post": "yes"},
        )  # fmt: skip

    assert response.status_code == 302
    assert not TreeItem.objects.filter(pk__in=[folder.pk, plain.pk]).exists()
    assert folder_names(directory) == []
    assert TreeItem.objects.filter(pk=tree["converted"].pk).exists()
