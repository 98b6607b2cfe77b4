"""Folder batches in the admin: listed with their members' counts, linked to the members,
cancelled and retried through the services."""

import pytest
from django.core.files.base import ContentFile

from geoconvert.models import Conversion, ConversionBatch
from geoconvert.services.batches import batch_start
from tagger.services import item_create
from tests.geoconvert.admin.test_admin_actions import _staff

CHANGELIST = "/admin/geoconvert/conversionbatch/"


@pytest.fixture
def batch(user, django_capture_on_commit_callbacks):
    folder = item_create(owner=user, name="survey")
    for name in ("a.tif", "b.tif", "c.tif"):
        item_create(owner=user, name=name, parent=folder, file=ContentFile(b"x"))
    with django_capture_on_commit_callbacks(execute=False):
        batch = batch_start(folder=folder)
    Conversion.objects.filter(pk=batch.conversions.first().pk).update(
        state="FAILURE", error="not a raster"
    )
    return batch


def test_the_batches_list_and_page_show_the_members_counts(client, batch):
    client.force_login(_staff("view_conversionbatch", "view_conversion"))

    listing = client.get(CHANGELIST).content.decode()
    assert str(batch.pk) in listing and "PENDING 2, FAILURE 1" in listing
    page = client.get(f"{CHANGELIST}{batch.pk}/change/").content.decode()
    assert f"?batch__id__exact={batch.pk}" in page and "3 conversions" in page
    members = client.get(f"/admin/geoconvert/conversion/?batch__id__exact={batch.pk}")
    assert members.status_code == 200
    assert members.context["cl"].result_count == 3


def test_staff_who_may_change_conversions_cancel_and_retry_batches(
    client, batch, django_capture_on_commit_callbacks
):
    client.force_login(_staff("view_conversionbatch", "view_conversion", "change_conversion"))

    with django_capture_on_commit_callbacks(execute=True):
        client.post(CHANGELIST, {"action": "retry_selected", "_selected_action": [str(batch.pk)]})
    assert Conversion.objects.filter(batch=batch).count() == 4  # the failed member, again

    client.post(CHANGELIST, {"action": "cancel_selected", "_selected_action": [str(batch.pk)]})
    batch.refresh_from_db()
    assert batch.state == ConversionBatch.State.CANCELLED


def test_staff_who_may_only_view_cannot_operate(client, batch):
    client.force_login(_staff("view_conversionbatch"))
    assert "cancel_selected" not in client.get(CHANGELIST).content.decode()
    client.post(CHANGELIST, {"action": "cancel_selected", "_selected_action": [str(batch.pk)]})
    batch.refresh_from_db()
    assert batch.state == ConversionBatch.State.PENDING
